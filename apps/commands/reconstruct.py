"""``face3d reconstruct``: photos or a video to a textured 3D face (mesh, textures, params)."""

from __future__ import annotations

import contextlib
import json
import shutil
import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

EPILOG = (
    "Examples:\n\n"
    "  face3d reconstruct --demo -o out/               (the bundled public-domain astronaut photo)\n\n"
    "  face3d reconstruct photo.jpg -o out/\n\n"
    "  face3d reconstruct a.jpg b.jpg c.jpg -o out/     (several photos of one person: one identity)\n\n"
    "  face3d reconstruct clip.mp4 -o out/ --fps 10     (per-frame expression and pose)\n\n"
    "  face3d reconstruct photo.jpg --method sdf -o out/ (implicit-SDF detail: mesh_sdf.obj, sdf.pt)\n\n"
    "  face3d reconstruct photo.jpg -o out/ --set photometric_steps=60 --set render_size=224   (fitting settings)\n\n"
    "  face3d reconstruct photo.jpg -o out/ --fast      (landmarks-only fit, no texture: the mesh in a fraction of a second)\n\n"
    "Exit codes: 0 ok, 1 internal error, 2 bad input (no face, unreadable file), 3 missing optional dependency."
)

DEMO_NAME = "astronaut.png"
#: What ``--fast`` adds to preset 'fast': no texture bake, no shape-from-shading detail.
FAST_OPTIONS = {"texture": False, "detail": False}


class _Progress:
    """A rich progress bar fed by the pipeline's ``progress(stage, done, total)`` callback."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.bar: Any = None
        self.tasks: dict[str, Any] = {}

    def __enter__(self) -> "_Progress":
        if self.enabled:
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

            self.bar = Progress(TextColumn("{task.description:<12}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                                TimeElapsedColumn(), transient=False, console=_console())
            self.bar.__enter__()
        return self

    def __call__(self, stage: str, done: int, total: int) -> None:
        if self.bar is None:
            return
        if stage not in self.tasks:
            self.tasks[stage] = self.bar.add_task(stage, total=total)
        self.bar.update(self.tasks[stage], completed=done, total=total)

    def __exit__(self, *exc: Any) -> None:
        if self.bar is not None:
            self.bar.__exit__(*exc)


def _console() -> Any:
    from rich.console import Console

    return Console(stderr=True)


def reconstruct_cmd(
    inputs: Annotated[Optional[list[Path]], typer.Argument(help="Photo(s) of one person, or one video.", show_default=False)] = None,
    output: Annotated[Path, typer.Option("-o", "--output", help="Output folder. Files already there are never touched; "
                                                             "a previous result there needs --overwrite.")] = Path("out"),
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace the files of a previous result in OUTPUT (only those).")] = False,
    model: Annotated[str, typer.Option(help="Morphable model: default (embedded, ICT-FaceKit-derived), basic, ict, or a model file.")] = "default",
    fps: Annotated[Optional[float], typer.Option(help="Video sampling rate (frames per second).")] = None,
    faces: Annotated[str, typer.Option(help="largest or all (single photo).")] = "largest",
    landmarks: Annotated[Optional[Path], typer.Option(help="Use these 68/478 landmarks (txt/json/npy) instead of detection.")] = None,
    device: Annotated[str, typer.Option(help="Torch device: cpu, cuda, or auto (CUDA when present for the SDF and for 8+ photos/frames).")] = "auto",
    demo: Annotated[bool, typer.Option("--demo", help=f"Write the astronaut photo to OUTPUT/{DEMO_NAME} and reconstruct it.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress or summary output.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print a machine-readable JSON summary on stdout.")] = False,
    texture_resolution: Annotated[int, typer.Option(help="UV texture size in pixels.")] = 1024,
    method: Annotated[str, typer.Option(help="3dmm (fit + shape-from-shading detail) or sdf (implicit-SDF detail, ~1-2 min).")] = "3dmm",
    preset: Annotated[str, typer.Option(help="Fitting preset: default (landmarks, then shading) or fast (landmarks only, "
                                              "half the steps).")] = "default",
    fast: Annotated[bool, typer.Option("--fast", help="Preset fast, no texture, no detail: the fitted mesh only.")] = False,
    settings: Annotated[Optional[list[str]], typer.Option("--set", metavar="KEY=VALUE",
                                                          help="A fitting setting (repeatable), e.g. --set photometric_steps=60.")] = None,
) -> None:
    """Reconstruct a textured 3D face from photos or a video."""
    import time

    from face3d.errors import BadInputError

    t0 = time.perf_counter()
    paths = list(inputs or [])
    if demo and paths:
        raise BadInputError("--demo takes no input files")
    if not paths and not demo:
        raise BadInputError("no input: give photo(s), a video, or --demo")
    from face3d.io.atomic import check_output_dir, output_dir

    check_output_dir(output, overwrite)  # before the fit: a bad output place costs no time
    from face3d.warmup import start_background_compile

    start_background_compile()  # first run after install: the texture and overlay kernels compile on the other core
    with contextlib.ExitStack() as stack:
        if demo:
            import tempfile

            from face3d.io.images import write_demo_image

            demo_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="face3d-demo-")))
            paths = [write_demo_image(demo_dir / DEMO_NAME)]
        from face3d.reconstruction import reconstruct
        from face3d.result import Reconstruction, write_many

        with _Progress(enabled=not quiet and not as_json and sys.stderr.isatty()) as bar:
            result = reconstruct([str(p) for p in paths] if len(paths) > 1 else str(paths[0]), model=model, device=device, faces=faces,
                                 landmarks=str(landmarks) if landmarks else None, fps=fps, progress=bar,
                                 texture_resolution=texture_resolution, method=method,
                                 **{"preset": "fast" if fast else preset, **(FAST_OPTIONS if fast else {}), **parse_settings(settings or [])})
        t_save = time.perf_counter()
        recs = [result] if isinstance(result, Reconstruction) else list(result)
        with output_dir(output, overwrite=overwrite) as tmp:
            if isinstance(result, Reconstruction):
                written = result.write_files(tmp)
                if demo:
                    shutil.copyfile(paths[0], tmp / DEMO_NAME)
                    written.append(DEMO_NAME)
            else:
                kind = "frames" if recs and recs[0].frame is not None else ("faces" if faces == "all" else "photos")
                written = write_many(recs, tmp, kind=kind)
    save_s = time.perf_counter() - t_save
    total = time.perf_counter() - t0
    summary: dict[str, Any] = {
        "output": str(output), "model": recs[0].model_name, "count": len(recs),
        "landmark_error_interocular": [r.landmark_error for r in recs],
        "timings_s": {**recs[0].timings, "save": save_s, "total_with_save": total},
        "files": sorted(written),
        "notes": sorted({n for r in recs for n in r.notes}),
    }
    for note in summary["notes"]:
        typer.echo(f"warning: {note}", err=True)
    if as_json:
        typer.echo(json.dumps(summary, indent=1))
    elif not quiet:
        t = summary["timings_s"]
        stages = ", ".join(f"{k} {v:.2f}s" for k, v in t.items())
        typer.echo(f"wrote {output} ({len(recs)} reconstruction(s), landmark error "
                   f"{100 * max(summary['landmark_error_interocular']):.2f}% of the eye distance)\n  {stages}", err=True)
        from face3d.warmup import kernel_counts

        if kernel_counts().compiled:
            typer.echo("note: this run compiled face3d's numba kernels first (they are cached now); `face3d warmup` "
                       "does that once, right after installing or upgrading", err=True)


def parse_settings(items: list[str]) -> dict[str, Any]:
    """``["photometric_steps=60", "photometric=false"]`` -> ``{"photometric_steps": 60, "photometric": False}``
    (values read as JSON, else kept as text); a dotted key sets a field of a nested group
    (``landmark_stage.lr_shape=4`` -> ``{"landmark_stage": {"lr_shape": 4}}``); a malformed item raises BadInputError."""
    from face3d.errors import BadInputError

    out: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        parts = key.strip().split(".")
        if not sep or len(parts) > 2 or not all(p.isidentifier() for p in parts):
            raise BadInputError(f"--set {item!r}: expected KEY=VALUE or GROUP.KEY=VALUE, e.g. photometric_steps=60")
        try:
            value: Any = json.loads(text)
        except json.JSONDecodeError:
            value = text
        if len(parts) == 2:
            group = out.setdefault(parts[0], {})
            if not isinstance(group, dict):
                raise BadInputError(f"--set {item!r}: {parts[0]!r} was already set as a whole")
            group[parts[1]] = value
        else:
            out[parts[0]] = value
    return out


def register(app: typer.Typer) -> None:
    app.command("reconstruct", epilog=EPILOG)(reconstruct_cmd)
