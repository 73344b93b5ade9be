"""The type check covers the public API. mypy itself runs as its own CI step (``.ci/run``:
``python -m mypy``, files from pyproject.toml ``[tool.mypy]``; about 60 s here), not as a test."""

import tomllib
from pathlib import Path

import face3d

ROOT = Path(__file__).resolve().parents[1]


def _mypy_files() -> list[str]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["mypy"]["files"]


def test_mypy_config_covers_the_public_api():
    files = _mypy_files()
    assert all((ROOT / f).exists() for f in files), files
    for module, _ in face3d._LAZY.values():  # every module behind a name in face3d.__all__
        rel = module.replace(".", "/")
        assert f"{rel}.py" in files or f"{rel}/__init__.py" in files, module
    assert "face3d/models/model.py" in files and "face3d/errors.py" in files and "apps" in files


def test_ci_runs_mypy_as_its_own_step():
    lines = [ln.strip() for ln in (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()]
    assert ".venv/bin/python -m mypy" in lines
