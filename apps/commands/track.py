"""``face3d track``: a video of a face -> per-frame ARKit weights and head pose (an Animation)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

EPILOG = (
    "Examples:\n\n"
    "  face3d track clip.mp4 --avatar out/ -o anim.json\n\n"
    "  face3d track clip.mp4 --avatar default -o take.csv --fps 30      (.csv: Live Link Face)\n\n"
    "  face3d track clip.mp4 --avatar ict -o anim.glb                 (.glb: the avatar animated)\n\n"
    "Exit codes: 0 ok, 1 internal error, 2 bad input (unreadable video, no face), 3 missing optional dependency."
)


def track_cmd(
    video: Annotated[Path, typer.Argument(help="Video of one face (any ffmpeg-readable file).")],
    output: Annotated[Path, typer.Option("-o", "--output", help="anim.json/.npz (Animation), .csv (Live Link Face) or .glb.")],
    avatar: Annotated[str, typer.Option("--avatar", help="A 'face3d reconstruct' output folder, a model name or a model .npz.")] = "default",
    fps: Annotated[Optional[float], typer.Option("--fps", help="Sample the video at this rate (default: every frame).")] = None,
    max_frames: Annotated[Optional[int], typer.Option("--max-frames", help="Stop after this many frames.")] = None,
    focal: Annotated[Optional[float], typer.Option("--focal", help="Focal length in pixels (default 1.2 x the long side).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON summary.")] = False,
) -> None:
    """Track expression (ARKit weights) and head pose in a video, identity fixed from the avatar."""
    from face3d.animation.avatar import load_avatar
    from face3d.animation.tracking import track

    from .animate import check_animation_output, write_animation

    check_animation_output(output)
    av = load_avatar(avatar)
    anim = track(video, av, fps=fps, max_frames=max_frames, focal=focal)
    write_animation(anim, av, output)
    summary = {"output": str(output), "frames": anim.n_frames, "fps": anim.fps, "missing_frames": len(anim.meta["missing_frames"]),
               "seconds": anim.meta["seconds_total"], "avatar": av.name}
    typer.echo(json.dumps(summary, indent=1) if as_json else
               f"wrote {output} ({anim.n_frames} frames at {anim.fps:g} fps, {summary['missing_frames']} without a face) "
               f"in {summary['seconds']} s")


def register(app: typer.Typer) -> None:
    app.command("track", epilog=EPILOG)(track_cmd)
