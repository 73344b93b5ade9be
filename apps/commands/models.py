"""``face3d models list|info NAME|install NAME``: what models exist, what they hold, installing ICT-FaceKit."""

from __future__ import annotations

import json
from typing import cast

import typer

models_app = typer.Typer(
    epilog="Example: face3d models list; face3d models info ict; face3d models install ict",
    help="Morphable models: list, inspect, install.", no_args_is_help=True)


@models_app.command("list")
def list_models() -> None:
    """Known model names, whether their files are present, and where."""
    from face3d.models.registry import available_models, model_info

    for name in available_models():
        info = model_info(name)
        state = "installed" if info.installed else "missing"
        typer.echo(f"{name:6s} {state:9s} {info.description}")
        typer.echo(f"{'':6s} {'':9s} licence: {info.licence}; {'at' if info.installed else 'get it'}: "
                   f"{info.location if info.installed else info.how_to_get}")


@models_app.command("info")
def info(name: str = typer.Argument(..., help="default, basic, ict, flame, bfm or a model file"),
         as_json: bool = typer.Option(False, "--json", help="print JSON")) -> None:
    """Load a model and print its sizes, expressions, landmark sets, regions and provenance."""
    import torch

    from face3d.models.registry import load_model

    m = load_model(name)
    summary = {
        "name": m.name, "version": m.version, "vertices": m.n_vertices, "triangles": len(cast(torch.Tensor, m.faces)),
        "identity": m.n_shape, "expression": m.n_expression, "arkit": m.has_arkit, "albedo": m.n_albedo,
        "uvs": m.uvs is not None, "landmark_sets": {k: int(e.tri.shape[0]) for k, e in m.embeddings.items()},
        "regions": {k: int(r.sum()) for k, r in m.regions.items()},
        "articulated": m.is_articulated, "meta": m.meta,
    }
    if as_json:
        typer.echo(json.dumps(summary, indent=2, default=str))
        return
    for key, value in summary.items():
        typer.echo(f"{key}: {value}")


@models_app.command("install")
def install(name: str = typer.Argument(..., help="model to install (ict)"),
            url: str = typer.Option(None, help="archive URL (default: the pinned GitHub commit; file:// works)"),
            sha256: str = typer.Option(None, help="expected sha256 of the archive"),
            force: bool = typer.Option(False, help="re-download and re-convert")) -> None:
    """Download, verify, convert and cache a model (only ICT-FaceKit is redistributable)."""
    from face3d.models.install import ICT_URL
    from face3d.models.install import install as do_install

    opts: dict[str, object] = {"url": url or ICT_URL, "sha256": sha256, "force": force} if name == "ict" else {}
    res = do_install(name, **opts)
    typer.echo(f"installed {res.name} -> {res.model_path} (archive sha256 {res.archive_sha256}, {res.seconds} s)")


def register(app: typer.Typer) -> None:
    app.add_typer(models_app, name="models")
