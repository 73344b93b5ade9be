"""``face3d warmup``: compile every numba kernel a reconstruction needs, once, after install."""

from __future__ import annotations

from typing import Annotated

import typer

EPILOG = (
    "Run it once after installing (README's first command does): the first `face3d reconstruct` then loads the "
    "compiled kernels instead of compiling them (≈ 20 CPU s). A second run only loads them.\n\n"
    "Example:\n\n"
    "  face3d warmup"
)


def warmup_cmd(
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No summary line.")] = False,
) -> None:
    """Compile and cache the numba kernels of `face3d reconstruct` (reconstructs the bundled demo photo once)."""
    from face3d.warmup import compile_all

    report = compile_all()
    if not quiet:
        k = report.kernels
        typer.echo(f"face3d kernels ready in {report.seconds:.1f} s: {k.compiled} compiled here, {k.loaded} loaded from the cache"
                   + (", the later stages compiled in a second process" if report.background else ""), err=True)


def register(app: typer.Typer) -> None:
    app.command("warmup", epilog=EPILOG)(warmup_cmd)
