"""``face3d blender-addon``: package ``apps/blender`` as an installable add-on zip."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path
from typing import Annotated

import typer

from face3d.errors import BadInputError
from face3d.io.atomic import check_output_file, write_bytes

ADDON_DIR = Path(__file__).resolve().parents[1] / "blender"
PACKAGE = "face3d_blender"
EPILOG = (
    "Example:\n\n"
    "  face3d blender-addon -o face3d_blender.zip\n\n"
    "Blender 4.2+: Edit > Preferences > Get Extensions > Install from Disk; older: Add-ons > Install. "
    "The panel is in the 3D viewport sidebar (N), tab 'face3d'."
)


def addon_files() -> list[Path]:
    """The add-on's files (``*.py`` and ``blender_manifest.toml``), sorted."""
    files = sorted(p for p in ADDON_DIR.iterdir() if p.is_file() and (p.suffix == ".py" or p.name == "blender_manifest.toml"))
    if not any(p.name == "__init__.py" for p in files):
        raise BadInputError(f"{ADDON_DIR}: the add-on package has no __init__.py")
    return files


def build_addon_zip(path: str | Path) -> Path:
    """Write the add-on zip (top folder ``face3d_blender/``, fixed timestamps: byte-identical rebuilds)."""
    out = Path(path)
    if out.suffix.lower() != ".zip":
        raise BadInputError(f"-o {out}: the add-on file must end in .zip")
    check_output_file(out)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for f in addon_files():
            info = zipfile.ZipInfo(f"{PACKAGE}/{f.name}", date_time=(2024, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, f.read_bytes())
    return write_bytes(out, buf.getvalue())


def blender_addon(
    output: Annotated[Path, typer.Option("-o", "--output", help="Zip file to write.")] = Path("face3d_blender.zip"),
) -> None:
    """Build the Blender add-on zip (Blender 4.2+ extension and legacy add-on in one)."""
    path = build_addon_zip(output)
    typer.echo(f"wrote {path} ({len(addon_files())} files)")


def register(app: typer.Typer) -> None:
    app.command("blender-addon", epilog=EPILOG)(blender_addon)
