"""A wheel carries the shipped assets, and an installed (non-editable) face3d finds them."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest
from setuptools import find_packages

from face3d.paths import assets_dir

ROOT = Path(__file__).resolve().parents[1]


def test_assets_dir_is_the_checkout_in_a_source_tree():
    d = assets_dir()
    assert d == ROOT / "assets"
    assert (d / "basic" / "basic_model.npz").is_file() and (d / "landmarks" / "mediapipe_to_ibug68.json").is_file()


def test_pyproject_installs_apps_and_renderers_under_the_face3d_namespace():
    """No generic top-level package: apps/ installs as face3d.apps and renderers/ as face3d.renderers
    ('renderers' is taken on PyPI), and the explicit package list holds every package of the tree (a
    new subpackage missing from it would be left out of the wheel)."""
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    st = cfg["tool"]["setuptools"]
    assert st["package-dir"] == {"face3d.apps": "apps", "face3d.renderers": "renderers"}
    tree = set(find_packages(str(ROOT), include=["face3d*"]))
    for name, folder in st["package-dir"].items():
        tree |= {name} | {f"{name}.{p}" for p in find_packages(str(ROOT / folder))}
    assert {"face3d.renderers", "face3d.renderers.backends", "face3d.apps.commands"} <= tree
    assert set(st["packages"]) == tree and len(st["packages"]) == len(tree)
    assert {p.split(".")[0] for p in st["packages"]} == {"face3d"}
    assert not [p for p in st["packages"] if p == "renderers" or p.startswith("renderers.")]
    assert cfg["project"]["scripts"] == {"face3d": "face3d.apps.cli:entry"}
    assert st["package-data"]["face3d.apps.blender"] == ["blender_manifest.toml"]


def test_face3d_apps_is_the_apps_folder_in_a_checkout():
    import face3d.apps.cli
    from face3d.apps.commands import blender_addon

    assert Path(face3d.apps.cli.__file__).resolve() == ROOT / "apps" / "cli.py"
    assert blender_addon.ADDON_DIR.resolve() == ROOT / "apps" / "blender"
    assert callable(face3d.apps.cli.main) and "reconstruct" in {c.name for c in face3d.apps.cli.app.registered_commands}


def test_face3d_renderers_is_the_renderers_folder_in_a_checkout():
    import torch

    import face3d
    import face3d.renderers.render
    from face3d.renderers import render_mesh
    from face3d.renderers.backends import get_backend

    pkg = face3d.renderers
    assert pkg.__name__ == "face3d.renderers" and Path(pkg.__file__).resolve() == ROOT / "renderers" / "__init__.py"
    assert Path(face3d.renderers.render.__file__).resolve() == ROOT / "renderers" / "render.py"
    assert render_mesh is face3d.renderers.render.render_mesh and face3d.Mesh is pkg.Mesh
    assert get_backend().__name__ == "face3d.renderers.backends.torch_cpu"
    # it renders: a triangle covering the image centre, seen from 1 m
    K = pkg.perspective_from_fov(40.0, 16, 16)[None]
    cam = pkg.PerspectiveCamera(K=K, t=torch.tensor([[0.0, 0.0, -1.0]]), width=16, height=16)
    tri = pkg.Mesh(torch.tensor([[[-0.2, -0.2, 0.0], [0.2, -0.2, 0.0], [0.0, 0.3, 0.0]]]), torch.tensor([[0, 1, 2]]))
    alpha = render_mesh(tri, cam, antialias=False).alpha[0, ..., 0]
    assert alpha[8, 8] == 1 and alpha[0, 0] == 0


def test_nothing_imports_a_top_level_renderers():
    """Every import of the renderer names face3d.renderers (a second copy under the old name would
    also make its classes differ): no source imports ``renderers``, and importing the SDK, the CLI and
    every renderer module leaves no top-level ``renderers`` in sys.modules."""
    bad = []
    for folder in ("face3d", "renderers", "apps", "benchmarks", "scripts", "examples", "tests"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            if path == ROOT / "face3d" / "renderers.py":
                continue  # the shim itself: its one ``from renderers import *`` runs for mypy only (TYPE_CHECKING)
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                    [node.module or ""] if isinstance(node, ast.ImportFrom) and node.level == 0 else []
                bad += [f"{path.relative_to(ROOT)}:{node.lineno} {n}" for n in names if n.split(".")[0] == "renderers"]
    assert bad == []
    code = ("import importlib, pkgutil, sys, face3d, face3d.apps.cli, face3d.renderers as r\n"
            "for m in pkgutil.walk_packages(r.__path__, 'face3d.renderers.'):\n"
            "    if m.name.rsplit('.', 1)[1] not in ('nvdiffrast', 'pytorch3d'): importlib.import_module(m.name)\n"
            "face3d.reconstruct, face3d.Mesh\n"
            "print(sorted(k for k in sys.modules if k.split('.')[0] == 'renderers'), len(sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120, check=True).stdout
    top, loaded = out.split("]")
    assert top == "[" and int(loaded) > 100


@pytest.mark.slow
def test_wheel_contains_assets_and_installed_package_resolves_them(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.nbi", "*.nbc")
    for name in ("face3d", "renderers", "apps", "assets"):
        shutil.copytree(ROOT / name, src / name, ignore=ignore)
    out = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(src)],
                   check=True, capture_output=True, timeout=300)
    (wheel,) = out.glob("face3d-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    data = [n for n in names if ".data/data/share/face3d/assets/" in n]
    shipped = {p.relative_to(ROOT / "assets").as_posix() for p in (ROOT / "assets").rglob("*") if p.is_file()}
    assert {n.split("/share/face3d/assets/", 1)[1] for n in data} == shipped
    assert "face3d/paths.py" in names and "face3d/renderers/fused.py" in names and "face3d/apps/cli.py" in names
    assert "face3d/renderers/backends/torch_cpu.py" in names and "face3d/apps/blender/blender_manifest.toml" in names
    assert {n.split("/")[0] for n in names} == {"face3d", "face3d-0.1.0.dist-info", "face3d-0.1.0.data"}  # no top-level renderers
    entry = zipfile.ZipFile(wheel).read("face3d-0.1.0.dist-info/entry_points.txt").decode()
    assert "face3d = face3d.apps.cli:entry" in entry
    # unpack like an installer: packages into a site dir, data under a prefix; the module must find the prefix copy
    site, prefix = tmp_path / "site", tmp_path / "prefix"
    with zipfile.ZipFile(wheel) as z:
        for n in names:
            if n.startswith("face3d/"):
                z.extract(n, site)
            elif ".data/data/" in n:
                target = prefix / n.split(".data/data/", 1)[1]
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(z.read(n))
    code = ("import sys, sysconfig; sysconfig.get_path = lambda name, scheme=None: sys.argv[1]; "
            "import face3d.paths as p; print(p.__file__); print(p.assets_dir())")
    module, found = subprocess.run([sys.executable, "-c", code, str(prefix)], cwd=tmp_path, env={"PYTHONPATH": str(site)},
                                   capture_output=True, text=True, timeout=60, check=True).stdout.split()
    assert Path(module).is_relative_to(site)
    assert Path(found) == prefix / "share" / "face3d" / "assets"
    assert (Path(found) / "basic" / "basic_model.npz").stat().st_size == (ROOT / "assets" / "basic" / "basic_model.npz").stat().st_size
    # the installed CLI is face3d.apps (the package, not the checkout's face3d/apps.py) and builds the add-on;
    # the installed renderer is the package face3d/renderers/ (not face3d/renderers.py) with its backends
    code = ("import sys, zipfile, face3d.apps, face3d.apps.cli as c, face3d.renderers as r\n"
            "from face3d.apps.commands.blender_addon import build_addon_zip\n"
            "print(face3d.apps.__file__); print(c.__file__)\n"
            "print(sorted(zipfile.ZipFile(build_addon_zip(sys.argv[1])).namelist()))\n"
            "from face3d.renderers.backends import get_backend\n"
            "print(r.__file__); print(get_backend().__file__); print(callable(r.render_mesh))")
    lines = subprocess.run([sys.executable, "-c", code, str(tmp_path / "addon.zip")], cwd=tmp_path, env={"PYTHONPATH": str(site)},
                           capture_output=True, text=True, timeout=120, check=True).stdout.splitlines()
    assert Path(lines[0]) == site / "face3d" / "apps" / "__init__.py" and Path(lines[1]) == site / "face3d" / "apps" / "cli.py"
    assert "face3d_blender/blender_manifest.toml" in lines[2] and "face3d_blender/__init__.py" in lines[2]
    assert Path(lines[3]) == site / "face3d" / "renderers" / "__init__.py"
    assert Path(lines[4]) == site / "face3d" / "renderers" / "backends" / "torch_cpu.py" and lines[5] == "True"
