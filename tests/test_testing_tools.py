"""``require_tool``: a missing external tool skips a test with the command that installs it, and
fails it under ``CI=true``; espeak-ng errors raised inside tests go through it (tests/conftest.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from face3d import testing
from face3d.testing import Tool, in_ci, require_tool, tool_problem

HERE = Path(__file__).resolve().parent


@pytest.fixture()
def fake_tools(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(testing.TOOLS, "fake-missing", Tool("fake-missing", "make fake", lambda: "not here"))
    monkeypatch.setitem(testing.TOOLS, "fake-ok", Tool("fake-ok", "true", lambda: None))
    tool_problem.cache_clear()
    yield
    tool_problem.cache_clear()


def test_missing_tool_skips_with_command_and_fails_in_ci(fake_tools: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    assert not in_ci()
    require_tool("fake-ok")  # returns
    with pytest.raises(pytest.skip.Exception, match=r"fake-missing is not available \(not here\); enable it with: make fake"):
        require_tool("fake-missing")
    for value in ("true", "1", "TRUE"):
        monkeypatch.setenv("CI", value)
        assert in_ci()
        with pytest.raises(pytest.fail.Exception, match="CI=true: missing tools fail"):
            require_tool("fake-missing")
    monkeypatch.setenv("CI", "false")
    with pytest.raises(pytest.skip.Exception):
        require_tool("fake-missing")


def test_known_tools_name_one_command() -> None:
    assert set(testing.TOOLS) == {"espeak-ng", "gltf-validator", "blender", "blender-lts", "mkdocs"}
    assert testing.TOOLS["mkdocs"].how.startswith('pip install -e ".[docs]"')
    assert testing.TOOLS["blender"].how == "bash .ci/extra-setup"
    assert testing.TOOLS["gltf-validator"].how == "(cd tests/node && npm install)"
    assert testing.blender_python().parts[-3:] == (".venv-blender", "bin", "python") or "FACE3D_BLENDER_PYTHON" in os.environ
    assert testing.blender_python("blender-lts").parts[-3] == ".venv-blender-lts" or "FACE3D_BLENDER_LTS_PYTHON" in os.environ


INNER = '''
import face3d.testing as t
from face3d.errors import MissingDependencyError

t.TOOLS["espeak-ng"] = t.Tool("espeak-ng", "apt-get install espeak-ng", lambda: "hidden by the test")
t.tool_problem.cache_clear()

def test_speech():
    raise MissingDependencyError("libespeak-ng1 (Debian package)", purpose="speech")

def test_other_dependency():
    raise MissingDependencyError("h5py")
'''


@pytest.mark.parametrize("ci", ["", "true"])
def test_conftest_turns_missing_espeak_into_skip_or_ci_failure(tmp_path: Path, ci: str) -> None:
    (tmp_path / "conftest.py").write_text((HERE / "conftest.py").read_text())
    (tmp_path / "test_inner.py").write_text(INNER)
    env = dict(os.environ, CI=ci, PYTHONPATH=str(HERE.parent))
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", "-p", "no:xdist", str(tmp_path)],
                       capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120, check=False)
    out = r.stdout
    if ci:
        assert "2 failed" in out and "CI=true: missing tools fail" in out
    else:
        assert "1 failed, 1 skipped" in out  # the h5py error is not a tool: it still fails
        assert "enable it with: apt-get install espeak-ng" in out
