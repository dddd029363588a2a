"""Find, read and validate ``kyklos.yaml``; apply ``KYKLOS_*`` environment overrides.

Every problem is collected and reported at once, each as an :class:`~kyklos.errors.Issue`
(field path, the value found, what was expected, a fix).

Environment overrides, applied before validation:

* ``KYKLOS_<SECTION>__<FIELD>[__<FIELD>...]=value`` sets any field; the value is parsed as YAML
  (``KYKLOS_MODEL__SEED=7``, ``KYKLOS_EVALUATE__METRICS='[rmse, mae]'``).
* Short names for the settings that differ between machines: ``KYKLOS_TRACKING_URI``,
  ``KYKLOS_DB_URL``, ``KYKLOS_ARTIFACTS``.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from kyklos.config.gates import GateSyntaxError, parse_gate
from kyklos.config.metrics import CLASSIFICATION_METRICS, REGRESSION_METRICS
from kyklos.config.project import ModelConfig, ProjectConfig, infer_task_of
from kyklos.errors import ConfigError, Issue, ValidationFailed

__all__ = [
    "PROJECT_FILE",
    "SHORT_ENV",
    "Project",
    "find_project_file",
    "load_project",
    "project_from_config",
    "validate_file",
]


class _YamlLoader(yaml.SafeLoader):
    """YAML 1.2 booleans: only true/false. YAML 1.1 also reads ``on``/``off``/``yes``/``no`` as
    booleans, which turns ``retrain: {on: [drift]}`` into ``{True: [drift]}``."""


_YamlLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_YamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool",
    re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
    list("tTfF"),
)


def _yaml(text: str) -> Any:
    return yaml.load(text, Loader=_YamlLoader)


PROJECT_FILE = "kyklos.yaml"
STATE_DIR = ".kyklos"
SHORT_ENV: dict[str, tuple[str, ...]] = {
    "KYKLOS_TRACKING_URI": ("tracking", "uri"),
    "KYKLOS_DB_URL": ("store", "db"),
    "KYKLOS_ARTIFACTS": ("store", "artifacts"),
}


@dataclass(frozen=True)
class Project:
    """A loaded project: its folder, its validated configuration and where its state lives."""

    root: Path
    config: ProjectConfig

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def state_dir(self) -> Path:
        return self.root / STATE_DIR

    @property
    def db_url(self) -> str:
        return self.config.store.db or f"sqlite:///{self.state_dir / 'kyklos.db'}"

    @property
    def artifacts_uri(self) -> str:
        raw = self.config.store.artifacts
        if raw is None:
            return str(self.state_dir / "artifacts")
        if "://" in raw or Path(raw).is_absolute():
            return raw
        return str(self.root / raw)

    @property
    def tracking_uri(self) -> str:
        return self.config.tracking.uri or f"sqlite:///{self.state_dir / 'mlflow.db'}"

    @property
    def mlflow_artifacts_uri(self) -> str:
        """Where runs of the embedded store keep their artifacts (MLflow's artifact root)."""
        return (self.state_dir / "mlruns").as_uri()

    @property
    def experiment(self) -> str:
        return self.config.tracking.experiment or self.config.name

    @property
    def registered_model(self) -> str:
        return self.config.tracking.registered_model or self.config.name

    @property
    def dataset_name(self) -> str:
        return self.config.data.name or self.config.name

    @property
    def cache_dir(self) -> Path:
        return self.state_dir / "cache"

    def resolve(self, path: str) -> str:
        """A data path relative to the project root, or a URI unchanged."""
        if "://" in path or Path(path).is_absolute():
            return path
        return str(self.root / path)


def find_project_file(start: str | Path | None = None) -> Path:
    """``kyklos.yaml`` in ``start`` (a file or folder) or the nearest parent folder."""
    here = Path(start or Path.cwd()).resolve()
    if here.is_file() or here.suffix in {".yaml", ".yml"}:
        if not here.is_file():
            raise ConfigError(f"project file {here} does not exist")
        return here
    for folder in (here, *here.parents):
        candidate = folder / PROJECT_FILE
        if candidate.is_file():
            return candidate
    raise ConfigError(
        f"no {PROJECT_FILE} in {here} or any parent folder. "
        "Hint: create one with `kyklos init DIR`, or pass --project PATH"
    )


def load_project(
    start: str | Path | None = None, *, env: Mapping[str, str] | None = None
) -> Project:
    """Load and validate the project around ``start``; raise :class:`ValidationFailed` on problems."""
    path = find_project_file(start)
    config, issues = validate_file(path, env=env)
    if config is None or issues:
        raise ValidationFailed(str(path), issues)
    return Project(root=path.parent, config=config)


def project_from_config(root: Path, config: ProjectConfig) -> Project:
    """A project for an in-memory configuration (tests, the demo, ``kyklos.run(config=...)``)."""
    issues = semantic_issues(config.model_dump())
    if issues:
        raise ValidationFailed(f"{root / PROJECT_FILE}", issues)
    return Project(root=root, config=config)


def validate_file(
    path: Path, *, env: Mapping[str, str] | None = None
) -> tuple[ProjectConfig | None, list[Issue]]:
    """Parse and validate one project file; return the config (if valid) and every issue."""
    try:
        raw = _yaml(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "somewhere"
        problem = getattr(exc, "problem", None) or str(exc)
        return None, [Issue("(file)", where, "valid YAML", f"fix the YAML syntax: {problem}")]
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        return None, [
            Issue("(file)", type(raw).__name__, "a mapping of sections (name, data, ...)")
        ]
    raw, env_issues = apply_env_overrides(raw, os.environ if env is None else env)
    config, issues = validate_mapping(raw)
    issues = env_issues + issues + semantic_issues(raw)
    return (config if not issues else None), issues


def apply_env_overrides(
    raw: dict[str, Any], env: Mapping[str, str]
) -> tuple[dict[str, Any], list[Issue]]:
    """A copy of ``raw`` with ``KYKLOS_*`` overrides applied (see the module docstring)."""
    result: dict[str, Any] = _yaml(yaml.safe_dump(raw)) or {}
    issues: list[Issue] = []
    for key in sorted(env):
        if key in SHORT_ENV:
            path: tuple[str, ...] = SHORT_ENV[key]
        elif key.startswith("KYKLOS_") and "__" in key:
            path = tuple(part.lower() for part in key[len("KYKLOS_") :].split("__"))
        else:
            continue
        try:
            value = _yaml(env[key]) if key not in SHORT_ENV else env[key]
        except yaml.YAMLError:
            value = env[key]
        node = result
        for part in path[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                issues.append(Issue(key, env[key], f"{'.'.join(path[:-1])} to be a section"))
                break
            node = child
        else:
            node[path[-1]] = value
    return result, issues


def validate_mapping(raw: dict[str, Any]) -> tuple[ProjectConfig | None, list[Issue]]:
    """Validate a parsed project mapping; pydantic errors become :class:`Issue` objects."""
    try:
        return ProjectConfig.model_validate(raw), []
    except ValidationError as exc:
        return None, [_issue(error, raw) for error in exc.errors()]


def semantic_issues(raw: Mapping[str, Any]) -> list[Issue]:
    """Checks across sections: gate syntax and metrics, task/metric fit, time split.

    Works on the raw mapping (defaults filled in) so that these problems are reported together
    with schema problems elsewhere in the file.
    """
    issues: list[Issue] = []
    section = _section(raw, "evaluate")
    metrics_raw = section.get("metrics", ["roc_auc", "accuracy", "f1"])
    metrics = [str(m) for m in metrics_raw] if isinstance(metrics_raw, list) else []
    gates = raw.get("gates") or []
    for i, gate in enumerate(gates if isinstance(gates, list) else []):
        try:
            expr = parse_gate(str(gate))
        except GateSyntaxError as exc:
            issues.append(
                Issue(
                    f"gates[{i}]", gate, "'metric OP expression'", f"{exc}; e.g. 'roc_auc >= 0.8'"
                )
            )
            continue
        for name in sorted({expr.metric, *expr.champion_metrics}):
            if name not in metrics:
                close = difflib.get_close_matches(name, metrics, n=1)
                hint = (
                    f"did you mean {close[0]!r}?" if close else f"add {name!r} to evaluate.metrics"
                )
                issues.append(
                    Issue(
                        f"gates[{i}]",
                        gate,
                        f"metric {name!r} to be one of evaluate.metrics {metrics}",
                        hint,
                    )
                )
    task = _task(raw)
    if task is not None:
        allowed = CLASSIFICATION_METRICS if task == "classification" else REGRESSION_METRICS
        known = set(CLASSIFICATION_METRICS) | set(REGRESSION_METRICS)
        for i, name in enumerate(metrics):
            if name in known and name not in allowed:
                issues.append(
                    Issue(
                        f"evaluate.metrics[{i}]",
                        name,
                        f"a {task} metric, one of {list(allowed)}",
                        f"the estimator is a {task} model",
                    )
                )
    data = _section(raw, "data")
    split = _section(section, "split")
    if split.get("method") == "time" and not data.get("time_column"):
        issues.append(
            Issue(
                "evaluate.split.method",
                "time",
                "data.time_column to be set for a time split",
                "set data.time_column, or use method: random",
            )
        )
    features = data.get("features")
    if isinstance(features, list) and data.get("target") in features:
        issues.append(
            Issue(
                "data.features",
                data.get("target"),
                "feature columns without the target",
                "remove it",
            )
        )
    return issues


def _section(raw: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = raw.get(key)
    return value if isinstance(value, Mapping) else {}


def _task(raw: Mapping[str, Any]) -> str | None:
    model = _section(raw, "model")
    try:
        config = ModelConfig.model_validate(
            {k: v for k, v in model.items() if k in {"estimator", "task"}}
        )
    except ValidationError:
        return None
    return infer_task_of(config)


def _issue(error: Any, raw: dict[str, Any]) -> Issue:
    loc = tuple(error.get("loc", ()))
    path = _format_loc(loc)
    kind = error.get("type", "")
    value = error.get("input")
    if kind == "extra_forbidden":
        parent_model = _model_at(loc[:-1])
        choices = sorted(parent_model.model_fields) if parent_model else []
        close = difflib.get_close_matches(str(loc[-1]), choices, n=1)
        hint = f"did you mean {close[0]!r}?" if close else f"valid keys: {', '.join(choices)}"
        return Issue(path, loc[-1], f"one of the known keys ({', '.join(choices)})", hint)
    if kind == "missing":
        return Issue(path, None, "a value (this key is required)", f"add '{loc[-1]}:' to the file")
    message = str(error.get("msg", "invalid value"))
    message = message.removeprefix("Value error, ").removeprefix("Input should be ")
    return Issue(path, value, message)


def _format_loc(loc: tuple[Any, ...]) -> str:
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text or "(file)"


def _model_at(loc: tuple[Any, ...]) -> type[BaseModel] | None:
    model: type[BaseModel] = ProjectConfig
    for part in loc:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(str(part))
        if field is None:
            return None
        annotation = field.annotation
        inner = _first_model(annotation)
        if inner is None:
            return None
        model = inner
    return model


def _first_model(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        found = _first_model(arg)
        if found is not None:
            return found
    return None
