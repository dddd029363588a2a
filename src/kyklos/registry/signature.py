"""What a logged model declares about itself: its MLflow signature and its pip requirements.

Both are computed here, explicitly, instead of letting MLflow infer them:

* MLflow's ``infer_signature`` trips over pandas 3 (the ``str`` dtype, tz-aware timestamps emit
  deprecation warnings and fall back to an untyped schema under ``-W error``); mapping the dtypes
  ourselves is exact and silent.
* MLflow's requirement inference re-imports the model in a subprocess (seconds); the
  requirements of a scikit-learn model are known from the classes inside it.
"""

from __future__ import annotations

import contextlib
import functools
import sys
from collections.abc import Iterable
from importlib import metadata
from typing import Any

__all__ = ["BASE_REQUIREMENTS", "column_type", "model_signature", "pip_requirements"]

#: Packages every logged scikit-learn model needs at load time (cloudpickle serialisation).
BASE_REQUIREMENTS = ("mlflow", "scikit-learn", "cloudpickle", "numpy", "pandas", "scipy")


def column_type(dtype: Any) -> str:
    """The MLflow type name (``double``, ``long``, ``string``, ...) for a pandas/numpy dtype.

    >>> import numpy as np
    >>> column_type(np.dtype("int32")), column_type(np.dtype("float64"))
    ('integer', 'double')
    """
    import numpy as np
    import pandas as pd
    from pandas.api import types as ptypes

    if isinstance(dtype, pd.CategoricalDtype):
        return column_type(dtype.categories.dtype)
    if ptypes.is_bool_dtype(dtype):
        return "boolean"
    if ptypes.is_datetime64_any_dtype(dtype):
        return "datetime"
    if ptypes.is_integer_dtype(dtype):
        size = np.dtype(getattr(dtype, "numpy_dtype", dtype)).itemsize
        signed = ptypes.is_signed_integer_dtype(dtype)
        return "integer" if size < 4 or (size == 4 and signed) else "long"
    if ptypes.is_float_dtype(dtype):
        size = np.dtype(getattr(dtype, "numpy_dtype", dtype)).itemsize
        return "float" if size <= 4 else "double"
    if ptypes.is_string_dtype(dtype) or ptypes.is_object_dtype(dtype):
        return "string"
    return "string"


def model_signature(input_example: Any, output: Any) -> Any:
    """An :class:`mlflow.models.ModelSignature` for a DataFrame input and a model output.

    Inputs become named columns (a column with missing values in the example is optional);
    the output is a tensor (numpy array: labels, probabilities) or columns (pandas).
    """
    import numpy as np
    import pandas as pd
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, DataType, Schema, TensorSpec

    def columns(frame: pd.DataFrame) -> Schema:
        return Schema(
            [
                ColSpec(
                    DataType[column_type(frame[name].dtype)],
                    str(name),
                    required=not bool(frame[name].isna().any()),
                )
                for name in frame.columns
            ]
        )

    if not isinstance(input_example, pd.DataFrame):
        raise TypeError(
            f"input_example must be a pandas DataFrame, got {type(input_example).__name__}"
        )
    if isinstance(output, pd.Series):
        outputs = columns(output.to_frame(name=str(output.name or "prediction")))
    elif isinstance(output, pd.DataFrame):
        outputs = columns(output)
    else:
        array = np.asarray(output)
        shape = (-1, *array.shape[1:])
        outputs = Schema([TensorSpec(array.dtype, shape)])
    return ModelSignature(inputs=columns(input_example), outputs=outputs)


def pip_requirements(model: Any, extra: Iterable[str] = ()) -> list[str]:
    """Pinned requirements (``name==version``) of a scikit-learn model, from the classes in it.

    The base packages, plus the distribution of every class (estimator, transformer, function)
    inside the model, found through ``get_params(deep=True)``: a Pipeline with a LightGBM step
    needs ``lightgbm``, a kyklos transformer needs ``kyklos``.
    """
    names: dict[str, None] = dict.fromkeys(BASE_REQUIREMENTS)
    for module in sorted(_modules(model)):
        for dist in _distributions().get(module, ()):
            names.setdefault(dist, None)
    pinned = []
    for name in names:
        try:
            pinned.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            continue
    pinned.extend(e for e in extra if e not in pinned)
    return pinned


def _modules(model: Any) -> set[str]:
    """Top-level module names of the objects inside ``model`` (stdlib and ``__main__`` left out)."""
    found: set[str] = set()
    seen: set[int] = set()
    stack = [model]
    while stack:
        obj = stack.pop()
        if id(obj) in seen or obj is None or isinstance(obj, str | bytes | int | float | bool):
            continue
        seen.add(id(obj))
        if isinstance(obj, list | tuple):
            stack.extend(obj)
            continue
        if isinstance(obj, dict):
            stack.extend(obj.values())
            continue
        module = obj.__module__ if callable(obj) and hasattr(obj, "__module__") else None
        module = module if isinstance(module, str) else type(obj).__module__
        root = module.split(".", 1)[0]
        if root not in sys.stdlib_module_names and root not in {"builtins", "__main__"}:
            found.add(root)
        get_params = getattr(obj, "get_params", None)
        if callable(get_params) and not isinstance(obj, type):
            with contextlib.suppress(TypeError):  # a class passed instead of an instance
                stack.extend(get_params(deep=True).values())
    return found


@functools.cache
def _distributions() -> dict[str, list[str]]:
    return dict(metadata.packages_distributions())
