"""Build and fit the model: preprocessing and estimator in one scikit-learn ``Pipeline``.

The preprocessing (imputation, scaling, one-hot or ordinal encoding with a bucket for unknown
categories) is fitted inside the same ``Pipeline`` as the estimator and saved with it, so
serving applies exactly what training fitted and cannot skew from it.

Any scikit-learn-compatible estimator works, named by import path
(``sklearn.ensemble.HistGradientBoostingClassifier``, ``lightgbm.LGBMClassifier``,
``xgboost.XGBRegressor`` when installed). The seed goes into every ``random_state`` left unset
and into NumPy's and Python's global generators before fitting, so fitting twice on the same data
gives bitwise-identical predictions.

Columns pass through ``DataFrame.to_numpy`` first, which turns pandas' ``NA`` (nullable integer,
boolean and string dtypes) into ``NaN`` that the imputers understand; the pickled model refers
only to pandas and scikit-learn.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import random
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from kyklos.errors import ConfigError, DataError
from kyklos.pipeline.validate import kind_of

if TYPE_CHECKING:
    import pandas as pd
    from sklearn.pipeline import Pipeline

    from kyklos.config.project import PreprocessingConfig

__all__ = [
    "MISSING_CATEGORY",
    "build_model",
    "fit_model",
    "import_estimator",
    "infer_task",
    "select_features",
    "to_xy",
]

MISSING_CATEGORY = "__missing__"

_INSTALL = {
    "lightgbm": "pip install 'kyklos[lightgbm]'",
    "xgboost": "pip install 'kyklos[xgboost]'",
    "catboost": "pip install catboost",
    "sklearn": "pip install scikit-learn",
}


def import_estimator(path: str) -> type:
    """The estimator class at ``path`` (``package.module.Class``).

    Raises :class:`~kyklos.errors.ConfigError` naming the path and the reason when it does not
    import or is not a scikit-learn-compatible estimator (``fit``, ``predict``, ``get_params``).
    """
    module_name, _, class_name = path.rpartition(".")
    where = f"model.estimator {path!r}"
    if not module_name or not class_name:
        raise ConfigError(
            f"{where}: expected an import path like 'sklearn.linear_model.LogisticRegression'"
        )
    top = module_name.split(".")[0]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        if missing == top:
            hint = _INSTALL.get(top, f"install the package that provides {top!r}")
            raise ConfigError(
                f"{where} cannot be imported: the package {top!r} is not installed. Hint: {hint}"
            ) from exc
        if module_name == missing or module_name.startswith(missing + "."):
            raise ConfigError(
                f"{where} cannot be imported: module {missing!r} does not exist. "
                "Hint: check the spelling of the import path"
            ) from exc
        raise ConfigError(
            f"{where} cannot be imported: it needs {missing!r}, which is not installed"
        ) from exc
    except Exception as exc:
        raise ConfigError(f"{where} cannot be imported: {type(exc).__name__}: {exc}") from exc
    obj = getattr(module, class_name, None)
    if obj is None:
        names = [
            n for n, v in vars(module).items() if isinstance(v, type) and not n.startswith("_")
        ]
        close = difflib.get_close_matches(class_name, names, n=1)
        hint = f" Hint: did you mean {module_name}.{close[0]}?" if close else ""
        raise ConfigError(f"{where}: module {module_name!r} has no {class_name!r}.{hint}")
    if not isinstance(obj, type):
        raise ConfigError(
            f"{where} is a {type(obj).__name__}, expected an estimator class "
            "(scikit-learn compatible: fit, predict, get_params)"
        )
    lacking = [m for m in ("fit", "predict", "get_params") if not hasattr(obj, m)]
    if lacking:
        raise ConfigError(
            f"{where} is not a scikit-learn-compatible estimator: it has no {', '.join(lacking)}. "
            "Hint: name a classifier or regressor class"
        )
    return obj


def select_features(
    df: pd.DataFrame,
    target: str,
    time_column: str | None = None,
    features: Sequence[str] | None = None,
    drop: Sequence[str] = (),
) -> tuple[list[str], list[str]]:
    """``(numeric, categorical)`` feature columns, in table order (or ``features`` order).

    Excluded: the target, the time column, ``drop`` and every datetime column. Booleans count as
    numeric (0/1); strings, objects and pandas categoricals as categorical.
    """
    excluded = {target, *drop}
    if time_column:
        excluded.add(time_column)
    names = list(features) if features is not None else [str(c) for c in df.columns]
    missing = [n for n in names if n not in df.columns]
    if missing:
        raise DataError(f"feature column(s) {missing} are not in the data")
    numeric: list[str] = []
    categorical: list[str] = []
    for name in names:
        if name in excluded:
            continue
        kind = kind_of(df[name])
        if kind in {"numeric", "boolean"}:
            numeric.append(name)
        elif kind == "categorical":
            categorical.append(name)
    if not numeric and not categorical:
        raise DataError(
            f"no feature columns left after excluding the target {target!r}, the time column, "
            "datetime columns and data.drop. Hint: check data.features and data.drop"
        )
    return numeric, categorical


def to_xy(
    df: pd.DataFrame, *, target: str, columns: Sequence[str]
) -> tuple[pd.DataFrame, pd.Series]:
    """The feature table and the target, without the rows whose target is missing."""
    keep = df[target].notna()
    if not bool(keep.all()):
        df = df.loc[keep]
    return df[list(columns)], df[target]


def build_model(
    *,
    estimator: str,
    params: Mapping[str, Any],
    preprocessing: PreprocessingConfig,
    numeric: Sequence[str],
    categorical: Sequence[str],
    seed: int,
) -> Pipeline:
    """An unfitted ``Pipeline([("preprocess", ColumnTransformer), ("model", estimator)])``."""
    import numpy as np
    import pandas as pd
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import (
        FunctionTransformer,
        OneHotEncoder,
        OrdinalEncoder,
        StandardScaler,
    )

    cls = import_estimator(estimator)
    try:
        model = cls(**dict(params))
    except TypeError as exc:
        raise ConfigError(
            f"model.params for {estimator}: {exc}. Hint: valid parameters: {_param_names(cls)}"
        ) from exc
    if not numeric and not categorical:
        raise ConfigError("the model has no feature columns; check data.features and data.drop")

    transformers: list[tuple[str, Any, list[str]]] = []
    if numeric:
        num_steps: list[tuple[str, Any]] = [
            (
                "to_float",
                FunctionTransformer(
                    pd.DataFrame.to_numpy,
                    kw_args={"dtype": "float64", "na_value": np.nan},
                    feature_names_out="one-to-one",
                ),
            ),
            (
                "impute",
                SimpleImputer(
                    strategy=preprocessing.numeric_impute,
                    fill_value=0.0 if preprocessing.numeric_impute == "constant" else None,
                ),
            ),
        ]
        if preprocessing.scale:
            num_steps.append(("scale", StandardScaler()))
        transformers.append(("num", Pipeline(num_steps), list(numeric)))
    if categorical:
        unknown = preprocessing.unknown
        encoder: Any
        if preprocessing.encode == "onehot":
            encoder = OneHotEncoder(
                handle_unknown="infrequent_if_exist" if unknown == "ignore" else "error",
                max_categories=preprocessing.max_categories,
                sparse_output=False,
            )
        else:
            encoder = OrdinalEncoder(
                handle_unknown="use_encoded_value" if unknown == "ignore" else "error",
                unknown_value=-1 if unknown == "ignore" else None,
                max_categories=preprocessing.max_categories,
            )
        cat_steps: list[tuple[str, Any]] = [
            (
                "to_object",
                FunctionTransformer(
                    pd.DataFrame.to_numpy,
                    kw_args={"dtype": object, "na_value": np.nan},
                    feature_names_out="one-to-one",
                ),
            ),
            (
                "impute",
                SimpleImputer(
                    strategy=preprocessing.categorical_impute,
                    fill_value=MISSING_CATEGORY
                    if preprocessing.categorical_impute == "constant"
                    else None,
                ),
            ),
            ("encode", encoder),
        ]
        transformers.append(("cat", Pipeline(cat_steps), list(categorical)))
    pipeline = Pipeline(
        [
            ("preprocess", ColumnTransformer(transformers, remainder="drop", sparse_threshold=0.0)),
            ("model", model),
        ]
    )
    _seed_random_states(pipeline, seed)
    return pipeline


def _param_names(cls: type) -> str:
    try:
        names = [p for p in inspect.signature(cls).parameters if p not in {"args", "kwargs"}]
    except (TypeError, ValueError):
        return "see the estimator's documentation"
    return ", ".join(names) or "none"


def _seed_random_states(model: Any, seed: int) -> None:
    """Set ``random_state=seed`` on every step that has one and left it unset."""
    updates = {
        name: seed
        for name, value in model.get_params(deep=True).items()
        if (name == "random_state" or name.endswith("__random_state")) and value is None
    }
    if updates:
        model.set_params(**updates)


def infer_task(model_or_estimator: Any) -> str:
    """``classification`` or ``regression`` for an estimator, a class, or a fitted pipeline."""
    from sklearn.base import is_classifier, is_regressor

    obj = model_or_estimator
    if isinstance(obj, type):
        try:
            obj = obj()
        except Exception:
            obj = None
    if obj is not None:
        try:
            if is_classifier(obj):
                return "classification"
            if is_regressor(obj):
                return "regression"
        except Exception:  # third-party estimators with incomplete tags
            pass
    cls = model_or_estimator if isinstance(model_or_estimator, type) else type(model_or_estimator)
    name = cls.__name__
    if name.endswith("Classifier") or "Classif" in name:
        return "classification"
    if name.endswith("Regressor"):
        return "regression"
    raise ConfigError(
        f"cannot tell whether {cls.__module__}.{name} is a classifier or a regressor. "
        "Hint: set model.task to classification or regression"
    )


def fit_model(model: Pipeline, X: pd.DataFrame, y: pd.Series, seed: int) -> Pipeline:
    """Fit ``model`` in place with NumPy's and Python's global generators seeded; return it."""
    import numpy as np

    random.seed(seed)
    np.random.seed(seed % 2**32)
    model.fit(X, y)
    return model
