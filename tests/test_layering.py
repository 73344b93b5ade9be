"""Data flows one way: ``face3d.io`` (files: atomic writes, npz, images, audio, video, meshes/GLB)
sits below ``face3d.animation``, which uses it; io never imports animation (or models, fitting...)."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
IO_MAY_IMPORT = ("face3d.io", "face3d.errors", "face3d.paths", "face3d.arkit")


def _allowed(module: str) -> bool:
    return module == "face3d" or not module.startswith("face3d") or any(
        module == a or module.startswith(a + ".") for a in IO_MAY_IMPORT)


def test_importing_io_does_not_load_animation():
    code = ("import importlib, json, pkgutil, sys, face3d.io as io\n"
            "for m in pkgutil.iter_modules(io.__path__): importlib.import_module('face3d.io.' + m.name)\n"
            "print(json.dumps(sorted(k for k in sys.modules if k.startswith('face3d'))))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    loaded = json.loads(out.strip().splitlines()[-1])
    assert "face3d.io.mesh" in loaded and "face3d.io.atomic" in loaded
    assert not [m for m in loaded if m.startswith("face3d.animation")], loaded
    assert [m for m in loaded if not _allowed(m)] == []


def test_io_sources_import_nothing_above_io():
    """Also the imports inside functions (they run later, so the subprocess check cannot see them)."""
    bad = []
    for path in sorted((ROOT / "face3d" / "io").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) and node.level == 0 else []
            bad += [f"{path.name}:{node.lineno} {n}" for n in names if not _allowed(n)]
    assert bad == []
    assert not (ROOT / "face3d" / "io" / "gltf.py").exists()  # the animated GLB lives in face3d.animation.gltf
