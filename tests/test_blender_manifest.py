"""The add-on's ``blender_manifest.toml`` against the rules of Blender's strict extension
validator (``blender_ext.py validate``, which extensions.blender.org and ``blender --command
extension build`` apply), checked without Blender; and the real validator when bpy is installed."""

from __future__ import annotations

import re
import subprocess
import tomllib
import zipfile
from pathlib import Path

from face3d.apps.commands.blender_addon import build_addon_zip
from face3d.testing import blender_python, require_tool

MANIFEST = Path(__file__).resolve().parents[1] / "apps" / "blender" / "blender_manifest.toml"
# Blender 4.2-5.0 `_bpy_internal/extensions/tags.py` (add-on tags accepted by extensions.blender.org)
ADDON_TAGS = {"3D View", "Add Curve", "Add Mesh", "Animation", "Bake", "Camera", "Compositing", "Development", "Game Engine",
              "Geometry Nodes", "Grease Pencil", "Import-Export", "Lighting", "Material", "Mesh", "Modeling", "Node", "Object",
              "Paint", "Pipeline", "Physics", "Render", "Rigging", "Scene", "Sculpt", "Sequencer", "System", "Text Editor",
              "Tracking", "User Interface", "UV"}
PERMISSIONS = {"files", "network", "clipboard", "camera", "microphone"}
VERSION = re.compile(r"^\d+\.\d+\.\d+$")


def terse_error(value: str) -> str | None:
    """Blender's rule for ``tagline`` and permission reasons (``pkg_manifest_validate_terse_description_or_error``)."""
    if len(value) > 64:
        return f"longer than 64 characters ({len(value)})"
    if not value or value != value.strip() or any(ord(c) < 32 for c in value):
        return "empty, padded or with control characters"
    if not (value[-1].isalnum() or value[-1] in ")]}"):
        return "ends with punctuation"
    return None


def manifest_errors(m: dict) -> list[str]:
    """The strict validator's field rules, applied to a parsed manifest."""
    errors = []
    for key in ("schema_version", "id", "version", "name", "tagline", "maintainer", "type", "license", "blender_version_min"):
        if key not in m:
            errors.append(f"missing {key}")
    pid = m.get("id", "")
    if not (pid.isidentifier() and "__" not in pid and not pid.startswith("_") and not pid.endswith("_")):
        errors.append(f"id {pid!r} is not a valid identifier")
    for key in ("schema_version", "version", "blender_version_min"):
        if not VERSION.match(str(m.get(key, ""))):
            errors.append(f"{key} {m.get(key)!r} is not X.Y.Z")
    if (e := terse_error(m.get("tagline", ""))) is not None:
        errors.append(f"tagline: {e}")
    if m.get("type") not in ("add-on", "theme"):
        errors.append(f"type {m.get('type')!r}")
    lic = m.get("license")
    if not (isinstance(lic, list) and lic and all(isinstance(x, str) and x.startswith("SPDX:") for x in lic)):
        errors.append(f"license {lic!r} must be a non-empty list of 'SPDX:...' strings")
    if unknown := set(m.get("tags", [])) - ADDON_TAGS:
        errors.append(f"unknown tags {sorted(unknown)}")
    for key, reason in m.get("permissions", {}).items():
        if key not in PERMISSIONS:
            errors.append(f"permission {key!r}")
        elif (e := terse_error(reason)) is not None:
            errors.append(f"permission {key}: {e}")
    if tuple(int(x) for x in m.get("blender_version_min", "0.0.0").split(".")) < (4, 2, 0):
        errors.append("blender_version_min below 4.2.0 (extensions need 4.2+)")
    return errors


def test_manifest_follows_the_strict_rules() -> None:
    m = tomllib.loads(MANIFEST.read_text(encoding="utf-8"))
    assert manifest_errors(m) == []
    assert m["id"] == "face3d" and m["type"] == "add-on"


def test_rule_checker_catches_what_blender_rejects() -> None:
    good = tomllib.loads(MANIFEST.read_text(encoding="utf-8"))
    assert manifest_errors({**good, "tagline": "x" * 65}) == ["tagline: longer than 64 characters (65)"]
    assert manifest_errors({**good, "tagline": "Imports faces."}) == ["tagline: ends with punctuation"]
    assert manifest_errors({**good, "tagline": "Formats (glb)"}) == []
    assert manifest_errors({**good, "id": "face3d__x"}) == ["id 'face3d__x' is not a valid identifier"]
    assert manifest_errors({**good, "tags": ["Faces"]}) == ["unknown tags ['Faces']"]
    assert manifest_errors({**good, "permissions": {"disk": "x"}}) == ["permission 'disk'"]


def test_blenders_own_validator_accepts_manifest(tmp_path: Path) -> None:
    require_tool("blender")
    py = blender_python()
    cli = sorted(py.parents[1].glob("lib/python3.*/site-packages/bpy/*/scripts/addons_core/bl_pkg/cli/blender_ext.py"))
    tags = sorted(py.parents[1].glob("lib/python3.*/site-packages/bpy/*/scripts/modules/_bpy_internal/extensions/tags.py"))
    assert cli and tags, f"blender_ext.py not found under {py.parents[1]}"
    src = tmp_path / "face3d_blender"
    with zipfile.ZipFile(build_addon_zip(tmp_path / "addon.zip")) as z:
        z.extractall(tmp_path)

    def validate() -> subprocess.CompletedProcess:
        return subprocess.run([str(py), str(cli[0]), "validate", f"--valid-tags={tags[0]}", str(src)], capture_output=True,
                              text=True, timeout=120, check=False)

    ok = validate()
    assert ok.returncode == 0, ok.stdout + ok.stderr
    text = (src / "blender_manifest.toml").read_text(encoding="utf-8")
    (src / "blender_manifest.toml").write_text(text.replace('tagline = "', 'tagline = "' + "x" * 20))
    bad = validate()
    assert bad.returncode != 0 and 'key "tagline" invalid' in bad.stdout + bad.stderr
