"""Serving: model loading, validation, batching, the prediction log, the HTTP server."""
