"""The flat public API: ``kyklos.__all__`` is sorted and every name resolves."""

from __future__ import annotations

import subprocess
import sys

import kyklos


def test_all_is_sorted_and_resolves() -> None:
    assert list(kyklos.__all__) == sorted(kyklos.__all__)
    for name in kyklos.__all__:
        assert getattr(kyklos, name) is not None, name


def test_import_kyklos_is_cheap() -> None:
    code = (
        "import sys, kyklos\n"
        "print(','.join(m for m in ('mlflow','sklearn','pandas','pyarrow','sqlalchemy') "
        "if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == ""
