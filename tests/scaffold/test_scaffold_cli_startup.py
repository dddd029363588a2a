"""`kyklos --help` (and every command's --help) imports none of the heavy libraries.

Timings live in benchmarks/cli_startup.py; this checks the cause of a slow start instead: which
modules a `--help` pulls in.
"""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ["matplotlib", "mlflow", "pandas", "pyarrow", "scipy", "sklearn"]

PROBE = r"""
import json, sys
from kyklos.cli.app import app

def helps(group, prefix):
    yield [*prefix, "--help"]
    for info in group.registered_commands:
        yield [*prefix, info.name or info.callback.__name__.replace("_", "-"), "--help"]
    for info in group.registered_groups:
        yield from helps(info.typer_instance, [*prefix, info.name])

heavy = set(json.loads(sys.argv[1]))
found = {}
for args in helps(app, []):
    try:
        app(args, standalone_mode=False)
    except SystemExit:
        pass
    loaded = sorted(heavy & {m.split(".")[0] for m in sys.modules})
    found[" ".join(args)] = loaded
print(json.dumps(found))
"""


def test_help_of_every_command_imports_no_heavy_library() -> None:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(HEAVY)],
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert "init --help" in found
    assert "--help" in found
    assert {args: mods for args, mods in found.items() if mods} == {}
