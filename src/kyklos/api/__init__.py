"""The Python API: one function per CLI verb (``kyklos.run(...)`` is ``kyklos run``)."""
