"""``face3d --version`` and ``face3d.__version__`` report pyproject.toml's version; the changelog has it."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import face3d

REPO = Path(__file__).resolve().parents[1]
VERSION = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]


def test_version_comes_from_pyproject() -> None:
    assert re.fullmatch(r"\d+\.\d+\.\d+\S*", VERSION)
    assert face3d.__version__ == VERSION
    assert "__version__" in dir(face3d)


def test_cli_version_prints_it() -> None:
    proc = subprocess.run([sys.executable, "-m", "face3d.apps.cli", "--version"], capture_output=True, text=True,
                          cwd=REPO, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"face3d {VERSION}"


def test_changelog_keeps_a_changelog_with_this_version() -> None:
    text = (REPO / "CHANGELOG.md").read_text()
    assert text.startswith("# Changelog") and "keepachangelog.com" in text
    headings = re.findall(r"^## \[([^\]]+)\]", text, flags=re.MULTILINE)
    assert headings[0] == "Unreleased" and VERSION in headings
    for section in re.split(r"^## ", text, flags=re.MULTILINE)[1:]:
        kinds = re.findall(r"^### (\w+)", section, flags=re.MULTILINE)
        assert set(kinds) <= {"Added", "Changed", "Deprecated", "Removed", "Fixed", "Security"}, kinds
