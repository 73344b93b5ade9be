"""``face3d batch``: reconstruct a folder, glob or manifest of photos (local processes or Ray)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

EPILOG = (
    "Examples:\n\n"
    "  face3d batch photos/ -o out/ --workers 2\n\n"
    "  face3d batch 'shoot/**/*.jpg' -o out/ --resume\n\n"
    "  face3d batch people.csv -o out/ --engine ray --address auto\n\n"
    "Exit codes: 0 every item ok, 2 bad input (or some items failed on bad input), "
    "1 an item failed with an internal error, 3 missing optional dependency, 130 interrupted."
)


def batch(
    input: Annotated[str, typer.Argument(help="Folder (recursive), glob, image, or CSV/JSONL manifest with "
                                              "'path' and optional 'person' columns.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Output folder.")],
    workers: Annotated[int, typer.Option("--workers", "-w", help="Items processed in parallel.")] = 1,
    engine: Annotated[str, typer.Option(help="local (processes on this machine) or ray.")] = "local",
    address: Annotated[Optional[str], typer.Option(help="Ray cluster address (default: start a local one).")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Skip items already done with the same photos "
                                                          "and settings.")] = False,
    model: Annotated[str, typer.Option(help="Morphable model name (default, basic, ict) or a model file.")] = "default",
    device: Annotated[str, typer.Option(help="Torch device.")] = "cpu",
    preset: Annotated[str, typer.Option(help="Fitting preset: default or fast (see face3d reconstruct --help).")] = "default",
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Live progress bar.")] = True,
) -> None:
    """Reconstruct many photos: one output folder per item, results.parquet/.csv and summary.json."""
    import os

    from ..batch.local import threads_per_worker

    if engine == "local" and threads_per_worker(workers) == 1:
        # Before numpy loads: its OpenBLAS then starts no thread pool in this process (which does no
        # BLAS work), so the workers can fork from it (apps.batch.local.start_method); they run one thread each.
        os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    from face3d.fitting.stages import FitConfig

    from ..batch.progress import BatchProgress
    from ..batch.runner import run_batch

    FitConfig.preset(preset)  # an unknown name fails here, before any item runs
    settings: dict[str, object] = {"model": model, "device": device}
    if preset != "default":
        settings["preset"] = preset

    bar: BatchProgress | None = None

    def on_start(total: int, to_run: int) -> None:
        nonlocal bar
        bar = BatchProgress(total, to_run, enabled=progress).__enter__()

    def on_result(res: object) -> None:
        if bar is not None:
            bar(res)  # type: ignore[arg-type]

    try:
        report = run_batch(input, output, workers=workers, engine=engine, address=address, resume=resume,
                           settings=settings, on_start=on_start, on_result=on_result)
    finally:
        if bar is not None:
            bar.__exit__(None, None, None)
    s = report.summary
    for note in s.get("notes", []):
        typer.echo(f"warning: {note}", err=True)
    typer.echo(f"{s['ok']} ok, {s['failed']} failed, {s['interrupted']} interrupted, {s['resumed']} resumed; "
               f"{s['images_per_minute']:.2f} images/min; table: {output / 'results.csv'}")
    for r in report.results:
        if r.status == "failed":
            typer.echo(f"  failed {r.key}: {r.error_type}: {r.error_message}", err=True)
    if report.exit_code:
        raise SystemExit(report.exit_code)


def register(app: typer.Typer) -> None:
    app.command("batch", epilog=EPILOG)(batch)
