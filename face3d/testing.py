"""Helpers for tests and benchmarks: locating ``../shared/data`` and the external tools some tests use.

:func:`require_tool` is the one place that decides what a test does when a tool outside the
Python environment is missing (espeak-ng, the npm glTF validator, Blender's Python, MkDocs): on a
developer machine the test is skipped with a reason naming the one command that installs the
tool; under ``CI=true`` it fails, so CI always runs everything.
"""

from __future__ import annotations

import ctypes
import os
import re
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parents[1]


def shared_data() -> Path:
    """The shared data folder: env ``FACE3D_SHARED_DATA`` or ``<repo>/../shared/data``.

    Raises FileNotFoundError when absent (tests turn that into a failure, not a skip).
    """
    env = os.environ.get("FACE3D_SHARED_DATA")
    p = Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "data"
    if not p.is_dir():
        raise FileNotFoundError(f"shared data folder not found at {p} (set FACE3D_SHARED_DATA)")
    return p


def shared_ict() -> Path:
    """ICT-FaceKit's compact npz in the shared data folder (FileNotFoundError when that folder is absent)."""
    return shared_data() / "ict_facekit" / "ict_facekit.npz"


def use_shared_ict() -> Path | None:
    """Let ``load_model('ict')`` find :func:`shared_ict` in this process (and its children): sets
    env ``FACE3D_ICT`` unless it is already set. For tests, benchmarks and build commands of a
    development checkout; the library itself never looks in the shared data. Returns the path
    ``FACE3D_ICT`` names, or None when it is unset and the shared data holds no ICT-FaceKit."""
    if not os.environ.get("FACE3D_ICT"):
        try:
            path = shared_ict()
        except FileNotFoundError:
            return None
        if not path.exists():
            return None
        os.environ["FACE3D_ICT"] = str(path)
    return Path(os.environ["FACE3D_ICT"])


BLENDER_VENVS = {"blender": ".venv-blender", "blender-lts": ".venv-blender-lts"}
"""The add-on tests' Blender Pythons (made by ``.ci/extra-setup``): the newest bpy, and the
oldest supported LTS (4.2); ``FACE3D_BLENDER_PYTHON`` / ``FACE3D_BLENDER_LTS_PYTHON`` override them."""


def blender_python(tool: str = "blender") -> Path:
    """Blender's Python for the add-on tests (``tool``: 'blender' or 'blender-lts', see :data:`BLENDER_VENVS`)."""
    env = os.environ.get("FACE3D_BLENDER_PYTHON" if tool == "blender" else "FACE3D_BLENDER_LTS_PYTHON")
    return Path(env) if env else REPO / BLENDER_VENVS[tool] / "bin" / "python"


def gltf_validator_dir() -> Path:
    """The npm package folder of the Khronos glTF validator used by ``tests/node/validate.js``."""
    return REPO / "tests" / "node" / "node_modules" / "gltf-validator"


def _espeak_ok() -> str | None:
    try:
        ctypes.CDLL("libespeak-ng.so.1")
    except OSError:
        return "libespeak-ng.so.1 cannot be loaded"
    return None


def _validator_ok() -> str | None:
    if shutil.which("node") is None:
        return "node is not on PATH"
    return None if gltf_validator_dir().is_dir() else f"{gltf_validator_dir()} is missing"


def _blender_ok(tool: str) -> Callable[[], str | None]:
    def check() -> str | None:
        py = blender_python(tool)
        if not py.is_file():
            return f"{py} not found"
        r = subprocess.run([str(py), "-c", "import bpy"], capture_output=True, text=True, timeout=120, check=False)
        return None if r.returncode == 0 else f"{py} cannot import bpy: {r.stderr.strip()[-300:]}"

    return check


def _mkdocs_ok() -> str | None:
    import importlib.util

    missing = [m for m in ("mkdocs", "material", "mkdocstrings", "mkdocstrings_handlers.python")
               if importlib.util.find_spec(m.split(".")[0]) is None or importlib.util.find_spec(m) is None]
    return f"{', '.join(missing)} not installed" if missing else None


@dataclass(frozen=True)
class Tool:
    """An external tool: ``check()`` returns None when usable, else why not; ``how`` installs it."""

    name: str
    how: str
    check: Callable[[], str | None]


TOOLS: dict[str, Tool] = {
    "espeak-ng": Tool("espeak-ng", "sudo apt-get install espeak-ng libespeak-ng1", _espeak_ok),
    "gltf-validator": Tool("gltf-validator", "(cd tests/node && npm install)", _validator_ok),
    "blender": Tool("blender", "bash .ci/extra-setup", _blender_ok("blender")),
    "blender-lts": Tool("blender-lts", "bash .ci/extra-setup", _blender_ok("blender-lts")),
    "mkdocs": Tool("mkdocs", 'pip install -e ".[docs]" (part of ".[all]")', _mkdocs_ok),
}


@cache
def tool_problem(name: str) -> str | None:
    """Why the tool ``name`` (a key of :data:`TOOLS`) is unusable, or None when it works (cached)."""
    return TOOLS[name].check()


def in_ci() -> bool:
    """True when the environment variable ``CI`` is set to a true value (``true``, ``1``, ``yes``)."""
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def require_tool(name: str) -> None:
    """Skip the calling test when the tool ``name`` is missing (fail instead under ``CI=true``).

    The reason names the problem and the one command that installs the tool.
    """
    import pytest

    problem = tool_problem(name)
    if problem is None:
        return
    msg = f"{name} is not available ({problem}); enable it with: {TOOLS[name].how}"
    if in_ci():
        pytest.fail(msg + " [CI=true: missing tools fail]", pytrace=False)
    pytest.skip(msg)


def validate_gltf(path: str | os.PathLike[str]) -> dict:
    """The Khronos glTF validator's JSON report on ``path`` (``tests/node/validate.js``).

    Calls ``require_tool("gltf-validator")`` first, so a test using it skips (or fails in CI)
    when the validator is not installed.
    """
    import json

    require_tool("gltf-validator")
    r = subprocess.run(["node", str(REPO / "tests" / "node" / "validate.js"), str(path)], capture_output=True,
                       text=True, timeout=120, check=False)
    if r.returncode not in (0, 1):
        raise RuntimeError(f"glTF validator failed on {path}: {r.stderr.strip()}")
    return json.loads(r.stdout)


#: ``<!-- docs-test: skip: REASON -->`` on the line before a fence: the docs test does not run that block.
DOC_SKIP = re.compile(r"^<!--\s*docs-test:\s*skip:\s*(.+?)\s*-->\s*$")


@dataclass(frozen=True)
class DocBlock:
    """A fenced code block of a Markdown file.

    ``lang``: the fence's language ('bash', 'python', ...); ``line``: 1-based line of the opening
    fence; ``skip``: the reason of a :data:`DOC_SKIP` comment on the line before it, else None.
    """

    path: Path
    line: int
    lang: str
    code: str
    skip: str | None = None

    @property
    def where(self) -> str:
        """``file:line`` of the opening fence, relative to the repository where possible."""
        try:
            return f"{self.path.relative_to(REPO)}:{self.line}"
        except ValueError:
            return f"{self.path}:{self.line}"


def load_script(path: str | os.PathLike[str], name: str | None = None) -> ModuleType:
    """Import a script that is not part of a package (``scripts/*.py``, ``examples/*.py``) as a
    module named ``name`` (default: the file's stem), running its top level once."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name or Path(path).stem, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {path}")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def doc_blocks(path: str | os.PathLike[str], languages: tuple[str, ...] = ("bash", "python")) -> list[DocBlock]:
    """The fenced code blocks of the Markdown file ``path`` in ``languages``, in order.

    Fences start at the beginning of a line (```` ```bash ````); an unclosed fence raises ValueError.
    """
    p = Path(path)
    lines = p.read_text(encoding="utf-8").splitlines()
    out: list[DocBlock] = []
    i = 0
    while i < len(lines):
        m = re.match(r"^```([\w+-]*)\s*$", lines[i])
        if not m:
            i += 1
            continue
        start, lang = i, m.group(1)
        i += 1
        while i < len(lines) and not lines[i].startswith("```"):
            i += 1
        if i == len(lines):
            raise ValueError(f"{p}:{start + 1}: code fence is never closed")
        mark = DOC_SKIP.match(lines[start - 1]) if start > 0 else None
        if lang in languages:
            out.append(DocBlock(p, start + 1, lang, "\n".join(lines[start + 1 : i]) + "\n", mark.group(1) if mark else None))
        i += 1
    return out


def run_doc_block(block: DocBlock, cwd: str | os.PathLike[str], timeout: float = 600) -> subprocess.CompletedProcess:
    """Run ``block`` in ``cwd``: bash with ``-euo pipefail``, python with this interpreter; this
    interpreter's folder first on PATH (as an activated virtual environment has it). Raises
    AssertionError naming the block, with the end of its output, when it exits non-zero."""
    import sys

    env = dict(os.environ)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    if block.lang == "python":
        cmd = [sys.executable, "-c", block.code]
    elif block.lang == "bash":
        cmd = ["bash", "-euo", "pipefail", "-c", block.code]
    else:
        raise ValueError(f"{block.where}: cannot run a {block.lang!r} block")
    r = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    if r.returncode != 0:
        raise AssertionError(f"{block.where} ({block.lang}) exited {r.returncode}:\n{block.code}\n"
                             f"--- stdout ---\n{r.stdout[-2000:]}\n--- stderr ---\n{r.stderr[-3000:]}")
    return r
