"""What a deployment package keeps: .funcignore must not drop what the app runs."""

from __future__ import annotations

import fnmatch
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _ignored(path: str) -> bool:
    patterns = [
        line.strip()
        for line in (ROOT / ".funcignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for pattern in patterns:
        folder = pattern.rstrip("/")
        for prefix in prefixes:
            is_folder = prefix != path
            if pattern.endswith("/") and not is_folder:
                continue
            if fnmatch.fnmatch(prefix, folder) or fnmatch.fnmatch(
                prefix.rsplit("/", 1)[-1], folder
            ):
                return True
    return False


@pytest.mark.parametrize(
    "path",
    [
        "function_app.py",
        "host.json",
        "requirements.txt",
        "shared/rules.py",
        "shared/collectors/arc.py",
        "agent/Get-StigwatchDocument.ps1",
    ],
)
def test_package_keeps_what_the_app_runs(path: str) -> None:
    assert (ROOT / path).exists()
    assert not _ignored(path)


@pytest.mark.parametrize(
    "path",
    [
        ".venv/bin/python",
        "node_modules/azurite/package.json",
        ".azurite/azurite.pid",
        "tests/test_rules.py",
        "examples/demo.py",
        "shared/__pycache__/rules.cpython-311.pyc",
    ],
)
def test_package_leaves_out_local_and_test_files(path: str) -> None:
    assert _ignored(path)
