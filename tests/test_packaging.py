"""A wheel carries the shipped assets, and an installed (non-editable) face3d finds them."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from face3d.paths import assets_dir

ROOT = Path(__file__).resolve().parents[1]


def test_assets_dir_is_the_checkout_in_a_source_tree():
    d = assets_dir()
    assert d == ROOT / "assets"
    assert (d / "basic" / "basic_model.npz").is_file() and (d / "landmarks" / "mediapipe_to_ibug68.json").is_file()


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
    assert "face3d/paths.py" in names and "renderers/fused.py" in names and "apps/cli.py" in names
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
