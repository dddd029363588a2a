"""A raw-ASGI fast path in front of the FastAPI app for the hot endpoints.

``POST /predict``, ``POST /invocations`` and the Open Inference Protocol's
``POST /v2/models/{name}[/versions/{v}]/infer`` skip FastAPI's middleware stack, routing and
dependency resolution (about a third of the server's time per single-row request, measured
with py-spy): :class:`FastPath` hands them straight to the same handlers the FastAPI routes call
(:func:`kyklos.serving.app._timed` with ``_predict`` / ``_invocations``), so validation errors,
413/415, request ids, headers, metrics and the durable log before the answer are the same code,
not a copy. Everything else (``/docs``, ``/metrics``, ``/feedback``, other methods on the hot
paths, unknown routes, lifespan) goes to the FastAPI app unchanged::

    app = FastPath(create_app(project))   # what `kyklos serve` runs
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import TYPE_CHECKING, Any

from starlette.requests import Request

from kyklos.serving.app import Handler, _invocations, _predict, _timed

if TYPE_CHECKING:
    from fastapi import FastAPI

    from kyklos.serving.app import ServingState

__all__ = ["FastPath"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_ROUTES: dict[str, tuple[str, Handler]] = {
    "/predict": ("predict", _predict),
    "/invocations": ("invocations", _invocations),
}


class FastPath:
    """ASGI app: ``POST /predict`` and ``POST /invocations`` straight to their handlers, the rest
    to ``app`` (the FastAPI app of :func:`kyklos.serving.app.create_app`)."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app
        self.state: ServingState = app.state.serving

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and not scope.get("root_path"):
            path = scope["path"]
            route = _ROUTES.get(path)
            if route is None and path.startswith("/v2/"):
                from kyklos.serving.v2 import infer_route

                route = infer_route(path)
            if route is not None:
                endpoint, handler = route
                response = await _timed(self.state, endpoint, Request(scope, receive), handler)
                await send(
                    {
                        "type": "http.response.start",
                        "status": response.status_code,
                        "headers": response.raw_headers,
                    }
                )
                await send({"type": "http.response.body", "body": response.body})
                return
        await self.app(scope, receive, send)
