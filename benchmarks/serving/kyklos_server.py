"""``kyklos serve`` for the serving benchmark, with the prediction log optionally reduced.

    python kyklos_server.py PROJECT PORT WORKERS

``BENCH_LOG`` (benchmarking only, never a product setting) picks what the prediction log does:

- ``on`` (default): exactly ``kyklos serve`` (every answer written to the log first: it
  survives the server being killed);
- ``fsync``: ``kyklos serve --log-fsync`` (every answer also fdatasync'ed first: it survives a
  power loss);
- ``off``: nothing is appended (what the whole log costs: record building, group commit).

``BENCH_RUNTIME`` (``sklearn`` default, or ``onnx``) is ``kyklos serve --runtime``.

``BENCH_PATHS=slow`` (benchmarking only) serves without this issue's two fast paths, to show
what they bring in the same run: requests go through FastAPI's routing (no
:class:`~kyklos.serving.fastpath.FastPath`) and the model's preprocessing through scikit-learn
and pandas (no :mod:`kyklos.serving.compiled`).

The switches are applied at import time, so the spawned worker processes (which import this
file as their ``__mp_main__``) get them too.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from kyklos.data import predlog_writer

_MODE = os.environ.get("BENCH_LOG", "on")

if _MODE == "off":

    async def _skip(self: Any, records: Any) -> None:
        return None

    predlog_writer.LogWriter.append_async = _skip  # type: ignore[method-assign]
elif _MODE not in ("on", "fsync"):
    raise SystemExit(f"BENCH_LOG={_MODE!r}: expected on, fsync or off")

if os.environ.get("BENCH_PATHS", "fast") == "slow":
    from kyklos.serving import compiled, fastpath

    compiled.compile_preprocess = lambda model, features: None  # type: ignore[assignment]
    fastpath.FastPath = lambda app: app  # type: ignore[assignment,misc]


if __name__ == "__main__":
    import kyklos

    project, port, workers = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    runtime = os.environ.get("BENCH_RUNTIME", "sklearn")  # onnx: the exported graph
    kyklos.serve(
        project,
        host="127.0.0.1",
        port=port,
        workers=workers,
        runtime=runtime,
        log_fsync=_MODE == "fsync",
    )
