"""Model versions: registered in MLflow's model registry, recorded in kyklos's metadata DB.

A model version is the MLflow registered-model version (so the MLflow UI, ``mlflow models
serve`` and ``models:/name@champion`` URIs work) plus a ``model_versions`` row in kyklos's DB
with what MLflow has no place for: the reference profile, the gate results, the dataset
version and a hash of the model's files. Version numbers are MLflow's.

References accepted by :meth:`ModelRegistry.get`: ``3``, ``"3"``, ``"v3"``, ``"latest"`` or an
alias (``"champion"``, ``"challenger"``).
"""

from __future__ import annotations

import builtins
import datetime as dt
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, RowMapping, insert, select
from sqlalchemy.exc import IntegrityError

from kyklos.errors import NotFoundError, RegistryError
from kyklos.registry.gate import GateReport, GateResult
from kyklos.registry.provenance import current_actor
from kyklos.registry.tracking import Tracker
from kyklos.store import Database
from kyklos.store.events import record_event
from kyklos.store.schema import aliases, model_versions, runs

if TYPE_CHECKING:
    from kyklos.config import Project

__all__ = ["ModelRegistry", "ModelVersion", "parse_ref"]

_VERSION_REF = re.compile(r"^[vV]?(\d+)$")


@dataclass(frozen=True)
class ModelVersion:
    """One registered model version, with its gate results and current aliases."""

    model_name: str
    version: int
    run_id: str
    dataset_version_id: str | None
    created_at: dt.datetime
    model_uri: str
    model_hash: str
    metrics: dict[str, float]
    gate_results: tuple[GateResult, ...]
    gates_passed: bool
    aliases: tuple[str, ...]
    profile: dict[str, Any] | None
    signature: dict[str, Any] | None = None

    @property
    def registry_uri(self) -> str:
        """``models:/<name>/<version>``: the MLflow registry URI of this version."""
        return f"models:/{self.model_name}/{self.version}"

    @property
    def gate_report(self) -> GateReport:
        return GateReport(results=self.gate_results, passed=self.gates_passed)

    def to_dict(self, *, include_profile: bool = True) -> dict[str, Any]:
        data: dict[str, Any] = {
            "model_name": self.model_name,
            "version": self.version,
            "aliases": list(self.aliases),
            "run_id": self.run_id,
            "dataset_version_id": self.dataset_version_id,
            "created_at": self.created_at.isoformat(),
            "model_uri": self.model_uri,
            "registry_uri": self.registry_uri,
            "model_hash": self.model_hash,
            "metrics": {k: (v if math.isfinite(v) else None) for k, v in self.metrics.items()},
            "gates_passed": self.gates_passed,
            "gate_results": [r.to_dict() for r in self.gate_results],
        }
        if include_profile:
            data["profile"] = self.profile
            data["signature"] = self.signature
        return data


def parse_ref(ref: int | str) -> tuple[str, int | str]:
    """``("version", 3)``, ``("latest", "latest")`` or ``("alias", "champion")``.

    >>> parse_ref("v3"), parse_ref(3), parse_ref("champion")
    (('version', 3), ('version', 3), ('alias', 'champion'))
    """
    if isinstance(ref, bool):
        raise NotFoundError(f"{ref!r} is not a model version reference")
    if isinstance(ref, int):
        return ("version", ref)
    text = str(ref).strip()
    match = _VERSION_REF.match(text)
    if match:
        return ("version", int(match.group(1)))
    if text.lower() == "latest":
        return ("latest", "latest")
    return ("alias", text.lower())


class ModelRegistry:
    """The versions and aliases of one registered model.

    ``db`` is kyklos's metadata DB, the source of truth for aliases and their history;
    ``tracker`` reaches the MLflow registry, which mirrors them.
    """

    def __init__(
        self, db: Database, tracker: Tracker, model_name: str, *, project: str | None = None
    ) -> None:
        self.db = db
        self.tracker = tracker
        self.model_name = model_name
        self.project = project or model_name

    def __repr__(self) -> str:
        return f"ModelRegistry({self.model_name!r}, db={self.db.url!r})"

    @classmethod
    def for_project(cls, project: Project) -> ModelRegistry:
        """The registry of a loaded project (its metadata DB, MLflow store and model name)."""
        from kyklos.store import open_db

        uri = project.tracking_uri
        embedded = uri.startswith(("sqlite:", "file:")) or "://" not in uri
        tracker = Tracker(
            uri,
            artifact_location=project.mlflow_artifacts_uri if embedded else None,
            experiment=project.experiment,
        )
        return cls(open_db(project.db_url), tracker, project.registered_model, project=project.name)

    # -- registering --------------------------------------------------------------------------
    def register(
        self,
        *,
        run_id: str,
        model_uri: str,
        metrics: Mapping[str, float],
        gate_report: GateReport,
        dataset_version_id: str | None = None,
        profile: Mapping[str, Any] | None = None,
        signature: Mapping[str, Any] | None = None,
        actor: str | None = None,
    ) -> ModelVersion:
        """Register the run's logged model as a new version, with its gate results.

        The run must already have its ``runs`` row in the metadata DB. If recording the version
        in the DB fails, the MLflow version is deleted again: nothing is left half-registered.
        """
        from mlflow.exceptions import MlflowException

        model_hash = self.tracker.model_hash(model_uri)
        client = self.tracker.client
        model_id = (
            model_uri.removeprefix("models:/") if model_uri.startswith("models:/m-") else None
        )
        tags = {
            "kyklos.gates_passed": "true" if gate_report.passed else "false",
            "kyklos.model_hash": model_hash,
            **{
                f"kyklos.gate.{i}": f"{r.gate} → {r.reason}"
                for i, r in enumerate(gate_report.results)
            },
        }
        if dataset_version_id:
            tags["kyklos.dataset_version"] = dataset_version_id
        with self.tracker.errors(f"register model {self.model_name!r} in"):
            try:
                client.create_registered_model(
                    self.model_name,
                    tags={"kyklos.project": self.project},
                    description=f"Registered by kyklos (project {self.project}).",
                )
            except MlflowException as exc:
                if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                    raise
            # MLflow's SQL registry resolves a models:/ source through the *process-wide*
            # tracking URI; hand it the logged model's artifact location instead.
            source = (
                str(client.get_logged_model(model_id).artifact_location) if model_id else model_uri
            )
            created = client.create_model_version(
                self.model_name,
                source=source,
                run_id=run_id,
                tags=tags,
                description=f"gates: {gate_report.summary()}",
                model_id=model_id,
            )
            if model_id:
                _link_logged_model(client, model_id, self.model_name, str(created.version))
        version = int(created.version)
        now = dt.datetime.now(dt.UTC)
        clean_metrics = {str(k): float(v) for k, v in metrics.items()}
        try:
            with self.db.write() as conn:
                if (
                    conn.execute(select(runs.c.run_id).where(runs.c.run_id == run_id)).first()
                    is None
                ):
                    raise NotFoundError(
                        f"run {run_id!r} is not recorded in the metadata DB, so its model cannot be "
                        "registered. Hint: record the run (the `runs` table) before registering"
                    )
                conn.execute(
                    insert(model_versions).values(
                        model_name=self.model_name,
                        version=version,
                        run_id=run_id,
                        dataset_version_id=dataset_version_id,
                        created_at=now,
                        model_uri=model_uri,
                        model_hash=model_hash,
                        metrics={
                            k: (v if math.isfinite(v) else None) for k, v in clean_metrics.items()
                        },
                        gate_results=[r.to_dict() for r in gate_report.results],
                        gates_passed=gate_report.passed,
                        profile=dict(profile) if profile is not None else None,
                        signature=dict(signature) if signature is not None else None,
                    )
                )
                record_event(
                    conn,
                    project=self.project,
                    kind="model.registered",
                    actor=current_actor(actor),
                    message=f"registered {self.model_name} v{version}; gates: {gate_report.summary()}",
                    subject=f"{self.model_name} v{version}",
                    at=now,
                    payload={
                        "model_name": self.model_name,
                        "version": version,
                        "run_id": run_id,
                        "gates_passed": gate_report.passed,
                    },
                )
        except BaseException as exc:
            self._undo_mlflow_version(version)
            if isinstance(exc, IntegrityError):
                raise RegistryError(
                    f"the metadata DB already has version {version} of model {self.model_name!r}, "
                    "which MLflow has just created anew: the MLflow store and the metadata DB are "
                    "out of sync (was one of them reset?). Hint: point tracking.uri and store.db "
                    "at the pair that belongs together"
                ) from exc
            raise
        return ModelVersion(
            model_name=self.model_name,
            version=version,
            run_id=run_id,
            dataset_version_id=dataset_version_id,
            created_at=now,
            model_uri=model_uri,
            model_hash=model_hash,
            metrics=clean_metrics,
            gate_results=gate_report.results,
            gates_passed=gate_report.passed,
            aliases=(),
            profile=dict(profile) if profile is not None else None,
            signature=dict(signature) if signature is not None else None,
        )

    def _undo_mlflow_version(self, version: int) -> None:
        try:
            self.tracker.client.delete_model_version(self.model_name, str(version))
        except Exception:  # pragma: no cover - best effort; the original error matters more
            return

    # -- reading ------------------------------------------------------------------------------
    def get(self, ref: int | str) -> ModelVersion:
        """The version named by ``ref`` (``3``, ``"v3"``, ``"latest"``, ``"champion"``, ...).

        Raises :class:`~kyklos.errors.NotFoundError` listing the versions and aliases that exist.
        """
        with self.db.read() as conn:
            version = self.resolve(conn, ref)
            found = self._load(conn, version)
        if found is None:  # pragma: no cover - resolve() checked it
            raise self._not_found(ref, None)
        return found

    def resolve(self, conn: Connection, ref: int | str) -> int:
        """The version number ``ref`` names, read on ``conn``; NotFoundError otherwise."""
        kind, value = parse_ref(ref)
        if kind == "version":
            row = conn.execute(
                select(model_versions.c.version).where(
                    model_versions.c.model_name == self.model_name,
                    model_versions.c.version == value,
                )
            ).first()
            if row is not None:
                return int(row.version)
        elif kind == "latest":
            versions = self._versions(conn)
            if versions:
                return versions[-1]
        else:
            row = conn.execute(
                select(aliases.c.version).where(
                    aliases.c.model_name == self.model_name, aliases.c.alias == value
                )
            ).first()
            if row is not None and row.version is not None:
                return int(row.version)
        raise self._not_found(ref, conn)

    def list(self, *, full: bool = False) -> builtins.list[ModelVersion]:
        """Every version, oldest first. Profiles and signatures are loaded only when ``full``."""
        columns = list(model_versions.c)
        if not full:
            columns = [c for c in columns if c.name not in {"profile", "signature"}]
        with self.db.read() as conn:
            rows = conn.execute(
                select(*columns)
                .where(model_versions.c.model_name == self.model_name)
                .order_by(model_versions.c.version)
            ).mappings()
            held = self._aliases_by_version(conn)
            return [self._from_row(row, held.get(int(row["version"]), ())) for row in rows]

    def versions(self) -> builtins.list[int]:
        """The version numbers, ascending."""
        with self.db.read() as conn:
            return self._versions(conn)

    def aliases(self) -> dict[str, int]:
        """Every alias that is set, and its version."""
        with self.db.read() as conn:
            rows = conn.execute(
                select(aliases.c.alias, aliases.c.version).where(
                    aliases.c.model_name == self.model_name, aliases.c.version.is_not(None)
                )
            )
            return {str(r.alias): int(r.version) for r in rows}

    def champion(self) -> ModelVersion | None:
        """The version holding the ``champion`` alias, or None."""
        return self._by_alias("champion")

    def challenger(self) -> ModelVersion | None:
        """The version holding the ``challenger`` alias, or None."""
        return self._by_alias("challenger")

    def champion_metrics(self) -> dict[str, float] | None:
        """The champion's metrics (what relative gates compare against), or None."""
        champion = self.champion()
        return dict(champion.metrics) if champion is not None else None

    # -- internals ----------------------------------------------------------------------------
    def _by_alias(self, alias: str) -> ModelVersion | None:
        with self.db.read() as conn:
            row = conn.execute(
                select(aliases.c.version).where(
                    aliases.c.model_name == self.model_name, aliases.c.alias == alias
                )
            ).first()
            if row is None or row.version is None:
                return None
            return self._load(conn, int(row.version))

    def _load(self, conn: Connection, version: int) -> ModelVersion | None:
        row = (
            conn.execute(
                select(model_versions).where(
                    model_versions.c.model_name == self.model_name,
                    model_versions.c.version == version,
                )
            )
            .mappings()
            .first()
        )
        if row is None:
            return None
        return self._from_row(row, self._aliases_by_version(conn).get(version, ()))

    def _aliases_by_version(self, conn: Connection) -> dict[int, tuple[str, ...]]:
        held: dict[int, builtins.list[str]] = {}
        rows = conn.execute(
            select(aliases.c.alias, aliases.c.version)
            .where(aliases.c.model_name == self.model_name, aliases.c.version.is_not(None))
            .order_by(aliases.c.alias)
        )
        for r in rows:
            held.setdefault(int(r.version), []).append(str(r.alias))
        return {v: tuple(sorted(a, key=_alias_order)) for v, a in held.items()}

    def _versions(self, conn: Connection) -> builtins.list[int]:
        rows = conn.execute(
            select(model_versions.c.version)
            .where(model_versions.c.model_name == self.model_name)
            .order_by(model_versions.c.version)
        )
        return [int(r.version) for r in rows]

    def _from_row(self, row: RowMapping, held: Sequence[str]) -> ModelVersion:
        metrics = {
            str(k): (float(v) if v is not None else math.nan)
            for k, v in (row["metrics"] or {}).items()
        }
        return ModelVersion(
            model_name=str(row["model_name"]),
            version=int(row["version"]),
            run_id=str(row["run_id"]),
            dataset_version_id=row["dataset_version_id"],
            created_at=as_utc(row["created_at"]),
            model_uri=str(row["model_uri"]),
            model_hash=str(row["model_hash"]),
            metrics=metrics,
            gate_results=tuple(GateResult.from_dict(r) for r in row["gate_results"] or ()),
            gates_passed=bool(row["gates_passed"]),
            aliases=tuple(held),
            profile=row.get("profile"),
            signature=row.get("signature"),
        )

    def _not_found(self, ref: int | str, conn: Connection | None) -> NotFoundError:
        if conn is None:
            with self.db.read() as fresh:
                return self._not_found(ref, fresh)
        versions = self._versions(conn)
        set_aliases = {
            str(r.alias): int(r.version)
            for r in conn.execute(
                select(aliases.c.alias, aliases.c.version).where(
                    aliases.c.model_name == self.model_name, aliases.c.version.is_not(None)
                )
            )
        }
        if not versions:
            return NotFoundError(
                f"model {self.model_name!r} has no versions yet, so {ref!r} does not exist. "
                "Hint: train and register one with `kyklos run`"
            )
        kind, value = parse_ref(ref)
        listed = ", ".join(f"v{v}" for v in versions)
        named = ", ".join(f"{a} → v{v}" for a, v in sorted(set_aliases.items())) or "none set"
        what = f"no version {value}" if kind == "version" else f"no {value!r} alias set"
        return NotFoundError(
            f"model {self.model_name!r} has {what}; existing versions: {listed}; aliases: {named}"
        )


def _link_logged_model(client: Any, model_id: str, name: str, version: str) -> None:
    """Record the new version on the logged model (tag ``mlflow.modelVersions``), as
    ``mlflow.register_model`` does; the UI's model pages read it ("Registered models")."""
    logged = client.get_logged_model(model_id)
    listed = json.loads(logged.tags.get("mlflow.modelVersions") or "[]")
    entry = {"name": name, "version": version}
    if entry not in listed:
        client.set_logged_model_tags(
            model_id, {"mlflow.modelVersions": json.dumps([*listed, entry])}
        )


def as_utc(value: dt.datetime) -> dt.datetime:
    """A timezone-aware UTC datetime (SQLite returns naive ones)."""
    if value.tzinfo is None:
        return value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC)


def _alias_order(alias: str) -> tuple[int, str]:
    return ({"champion": 0, "challenger": 1}.get(alias, 2), alias)
