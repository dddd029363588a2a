"""Running the app: the uvicorn server, and the watcher that hot-swaps champion and challenger.

:class:`ChampionWatcher` polls the ``champion`` alias (one indexed SELECT on kyklos's
``aliases`` table) every ``interval`` seconds. When it moves (promotion or rollback), the new
version is loaded in a worker thread, off the event loop, and swapped in with one reference
assignment: requests in flight finish on the version they started with, new batches use the
new one. A version that fails to load leaves the old one serving; the failure is recorded as a
``serving.load_failed`` event, logged, and shown by the ``kyklos_model_load_failing`` gauge. It is
retried only when the alias moves again (or on ``POST /admin/reload``).

The same poll reads the active rollout (:func:`kyklos.registry.rollouts.active_rollout`): when
one starts, its challenger is loaded and joins as the canary or shadow arm; when it ends (or its
challenger became the champion), the arm leaves (requests in flight on it finish first). A
challenger that fails to load leaves the champion serving alone: the arm of an earlier rollout
leaves too, the failure is recorded (``serving.load_failed``, ``kyklos_model_load_failures``,
``rollout.load_error`` on ``/model``) and retried on ``POST /admin/reload``, not by the poll.

With ``kyklos serve --workers N`` every worker runs its own watcher, and each one swaps (or
fails to load) on its own poll. The events the alias and the rollout cause are recorded once
per server all the same: each is keyed by what caused it (the alias's revision, bumped on
every move, or the rollout's id) and recorded by the first worker to claim that key, with an
empty file created exclusively in the server's shared directory (``ServeOptions.shared_dir``,
see :mod:`kyklos.serving.workers`). A promotion, a rollback and a promotion again of the same
version are three revisions, so three events; a worker dying or restarting does not lose an
event (whichever worker swaps first claims it); a failure retried on ``POST /admin/reload``
(which reaches one worker) is recorded each time, as in a single process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import sys
from typing import TYPE_CHECKING, Any

from kyklos.errors import KyklosError

if TYPE_CHECKING:
    from kyklos.registry.rollouts import Rollout
    from kyklos.serving.app import ServingState

__all__ = ["ChampionWatcher", "bind_socket", "run_server"]

log = logging.getLogger("kyklos.serving")

_ACTOR = "kyklos serve"


class ChampionWatcher:
    """Polls the champion alias and swaps the serving model when it moves (see module doc)."""

    def __init__(self, state: ServingState, *, interval: float = 0.5) -> None:
        self.state = state
        self.interval = interval
        self.last_error: str | None = None
        self.challenger_error: str | None = None  # why the active rollout's challenger is absent
        self.failed_rollout: Rollout | None = None  # the rollout whose challenger failed to load
        self._failed: int | None = None  # the version that failed to load (not retried)
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="champion-watcher")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.check(retry=False)
            except Exception as exc:  # the watcher never dies; the old model keeps serving
                log.warning("champion watcher: %s: %s", type(exc).__name__, exc)

    async def check(self, *, retry: bool = True) -> int | None:
        """Read the alias; load and swap when it names another version; follow the active
        rollout (load, replace or drop the challenger arm). Returns the champion version
        serving afterwards."""
        async with self._lock:
            version = await self._check_champion(retry=retry)
            await self._check_rollout(retry=retry, champion=version)
            return version

    async def _check_rollout(self, *, retry: bool, champion: int | None) -> None:
        from kyklos.registry.rollouts import active_rollout
        from kyklos.serving.model import load_version
        from kyklos.store import open_db

        project = self.state.project
        rollout = await asyncio.to_thread(
            active_rollout, open_db(project.db_url), project.registered_model
        )
        if rollout is not None and rollout.challenger_version == champion:
            rollout = None  # promoted while the rollout was active: nothing left to compare
        arm = self.state.arm
        if rollout is None or (self.failed_rollout and self.failed_rollout.id != rollout.id):
            self.failed_rollout = self.challenger_error = None
        if rollout is None:
            if arm is not None:
                log.info("rollout %s ended: v%s leaves", arm.rollout_id, arm.model.version)
                await self.state.clear_challenger()
            return
        if arm is not None and arm.rollout_id == rollout.id:
            return
        if self.failed_rollout is not None and not retry:
            return
        retried = self.failed_rollout is not None  # on POST /admin/reload
        try:
            model = await asyncio.to_thread(load_version, project, rollout.challenger_version)
        except Exception as exc:
            self.failed_rollout = rollout
            reason = f"{type(exc).__name__}: {exc}"
            self.challenger_error = f"challenger v{rollout.challenger_version}: {reason}"
            self.state.metrics.load_failures.labels(
                project.registered_model, str(rollout.challenger_version)
            ).inc()
            if arm is not None:  # the arm of an earlier rollout must not stand in for it
                await self.state.clear_challenger()
            log.error("cannot load challenger v%s: %s", rollout.challenger_version, reason)
            await asyncio.to_thread(
                self._event,
                "serving.load_failed",
                rollout.challenger_version,
                f"cannot load challenger v{rollout.challenger_version}; the champion serves "
                f"alone: {reason}",
                {"version": rollout.challenger_version, "rollout_id": rollout.id},
                None if retried else f"rollout-{rollout.id}",
            )
            return
        self.failed_rollout = self.challenger_error = None
        await self.state.set_challenger(
            model, rollout_id=rollout.id, strategy=rollout.strategy, fraction=rollout.fraction
        )
        log.info("%s rollout: challenger v%s joined", rollout.strategy, model.version)

    async def _check_champion(self, *, retry: bool) -> int | None:
        current = self.state.model
        target, revision = await asyncio.to_thread(self._champion_version)
        if target is None or (current is not None and target == current.version):
            self._clear_failure()
            return current.version if current is not None else None
        if target == self._failed and not retry:
            return current.version if current is not None else None
        await self._load(target, revision, retried=target == self._failed)
        model = self.state.model
        return model.version if model is not None else None

    def _champion_version(self) -> tuple[int | None, int]:
        """The version the champion alias names (None: no champion) and the alias's revision."""
        from sqlalchemy import select

        from kyklos.store import open_db
        from kyklos.store.schema import aliases

        project = self.state.project
        with open_db(project.db_url).read() as conn:
            row = conn.execute(
                select(aliases.c.version, aliases.c.revision).where(
                    aliases.c.model_name == project.registered_model,
                    aliases.c.alias == "champion",
                )
            ).first()
        if row is None or row.version is None:
            return None, 0
        return int(row.version), int(row.revision)

    async def _load(self, version: int, revision: int, *, retried: bool = False) -> None:
        from kyklos.serving.model import load_version

        metrics = self.state.metrics
        project = self.state.project
        previous = self.state.model
        try:
            model = await asyncio.to_thread(load_version, project, version)
        except Exception as exc:
            reason = f"{type(exc).__name__}: {exc}"
            self._failed = version
            self.last_error = f"v{version}: {reason}"
            metrics.load_failures.labels(project.registered_model, str(version)).inc()
            metrics.load_failing.set(1)
            kept = f"v{previous.version}" if previous is not None else "nothing"
            log.error("cannot load v%s (kept %s serving): %s", version, kept, reason)
            await asyncio.to_thread(
                self._event,
                "serving.load_failed",
                version,
                f"cannot load v{version}; {kept} keeps serving: {reason}",
                {"version": version, "kept": previous.version if previous else None},
                None if retried else f"champion-r{revision}",
            )
            return
        self.state.swap(model)
        self._clear_failure()
        old = previous.version if previous is not None else None
        log.info("now serving v%s (was v%s)", model.version, old)
        await asyncio.to_thread(
            self._event,
            "serving.swapped",
            model.version,
            f"serving v{model.version} (was v{old})",
            {"version": model.version, "previous": old},
            f"champion-r{revision}",
        )

    def _clear_failure(self) -> None:
        if self._failed is not None or self.last_error is not None:
            self._failed = None
            self.last_error = None
            self.state.metrics.load_failing.set(0)

    def _event(
        self,
        kind: str,
        version: int,
        message: str,
        payload: dict[str, Any],
        cause: str | None = None,
    ) -> None:
        """Record an event; with ``cause`` (what made every worker do the same, see the module
        docstring) only when no other worker of this server recorded it first."""
        from kyklos.store import open_db
        from kyklos.store.events import record_event

        project = self.state.project
        if cause is not None and not self._claim(f"{kind}-v{version}-{cause}"):
            return
        try:
            with open_db(project.db_url).write() as conn:
                record_event(
                    conn,
                    project=project.name,
                    kind=kind,
                    actor=_ACTOR,
                    message=message,
                    subject=f"{project.registered_model} v{version}",
                    payload={"model_name": project.registered_model, **payload},
                )
        except Exception as exc:  # an audit write must not stop serving
            log.warning("cannot record the %s event: %s", kind, exc)

    def _claim(self, key: str) -> bool:
        """Whether this process records the event ``key``: always when it serves alone; in a
        worker, when it is the first of the server's workers to create the file ``key``."""
        shared = self.state.options.shared_dir
        if shared is None:
            return True
        try:
            os.close(os.open(shared / "events" / key, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        except FileExistsError:
            return False
        except OSError as exc:  # the directory is gone (stopping): rather twice than never
            log.warning("cannot claim the %s event for this server: %s", key, exc)
        return True


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (port 0: an ephemeral one), or a one-line error."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host.strip("[]"), port))
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        raise KyklosError(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}. "
            "Hint: pick another port with --port (or serve.port in kyklos.yaml)"
        ) from exc
    sock.set_inheritable(True)
    return sock


#: ``sys.setswitchinterval`` of a serving process (seconds; see run_server).
SWITCH_INTERVAL = 0.001


def run_server(app: Any, sock: socket.socket, *, log_level: str = "warning") -> None:
    """Serve ``app`` with uvicorn on ``sock`` until SIGINT/SIGTERM (graceful: in-flight requests
    finish, the prediction log is sealed)."""
    import uvicorn

    config = uvicorn.Config(
        app,
        log_level=log_level,
        access_log=False,  # headers (and tokens) never reach the log
        lifespan="on",
        timeout_graceful_shutdown=10,
        server_header=False,
    )
    server = uvicorn.Server(config)
    # The event loop waits for the GIL whenever a background thread runs Python (sealing the
    # log's WAL into Parquet, a batch in the worker thread): after at most the switch interval.
    # 5 ms (Python's default) showed as gaps of 15-20 ms in the loop while a 100k-row WAL was
    # sealed; 1 ms as 6-7 ms, the seal itself no slower (measured in process, 2-core VM).
    sys.setswitchinterval(SWITCH_INTERVAL)
    if not logging.getLogger("kyklos").handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logging.getLogger("kyklos").addHandler(handler)
        logging.getLogger("kyklos").setLevel(logging.INFO)
    server.run(sockets=[sock])
