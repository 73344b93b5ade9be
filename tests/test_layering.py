"""Data flows one way: ``face3d.io`` (files: atomic writes, npz, images, audio, video, meshes/GLB)
sits below ``face3d.animation``, which uses it; io never imports animation (or models, fitting...).
The renderer (``face3d.renderers``) sits below everything: of face3d it imports only face3d.errors."""

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


def test_renderer_imports_only_face3d_errors():
    """The renderer sits under everything (installed as face3d.renderers, the folder renderers/): of
    face3d it imports only face3d.errors, never the pipeline; relative imports stay inside the folder."""
    bad = []
    for path in sorted((ROOT / "renderers").rglob("*.py")):
        depth = len(path.relative_to(ROOT / "renderers").parts)  # 1: renderers/x.py, 2: renderers/backends/x.py
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.level:
                bad += [f"{path.name}:{node.lineno} level {node.level}"] if node.level > depth else []
                continue
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            bad += [f"{path.name}:{node.lineno} {n}" for n in names
                    if n.split(".")[0] in ("face3d", "renderers", "apps") and n != "face3d.errors"]
    assert bad == []
    code = ("import importlib, json, pkgutil, sys, face3d.renderers as r\n"
            "for m in pkgutil.walk_packages(r.__path__, 'face3d.renderers.'):\n"
            "    if m.name.rsplit('.', 1)[1] not in ('nvdiffrast', 'pytorch3d'): importlib.import_module(m.name)\n"
            "print(json.dumps(sorted(k for k in sys.modules if k.startswith('face3d'))))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    loaded = json.loads(out.strip().splitlines()[-1])
    assert "face3d.renderers.render" in loaded and "face3d.renderers.backends.torch_cpu" in loaded
    assert [m for m in loaded if m not in ("face3d", "face3d.errors") and not m.startswith("face3d.renderers")] == []
