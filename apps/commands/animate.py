"""``face3d animate``: speech audio -> lip-sync animation on an avatar (GLB, JSON/NPZ, CSV, MP4 preview)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

EPILOG = (
    "Examples:\n\n"
    "  face3d animate --audio speech.wav --avatar ict -o talk.glb\n\n"
    "  face3d animate --audio speech.wav --text \"hello there\" --avatar out/ -o talk.glb --video talk.mp4\n\n"
    "  face3d animate --audio speech.mp3 --avatar default -o talk.json      (.json/.npz Animation, .csv Live Link Face)\n\n"
    "Exit codes: 0 ok, 1 internal error, 2 bad input (unreadable audio, unknown avatar), 3 missing optional dependency."
)


ANIMATION_SUFFIXES = (".glb", ".json", ".npz", ".csv")


def check_animation_output(output: Path) -> None:
    """Raise BadInputError unless ``output`` has a suffix :func:`write_animation` knows."""
    from face3d.errors import BadInputError
    from face3d.io.atomic import check_output_file

    if output.suffix.lower() not in ANIMATION_SUFFIXES:
        raise BadInputError(f"--output must end in .glb, .json, .npz or .csv, got {output}")
    check_output_file(output)


def audio_relative_to(audio: str | None, output: Path) -> str | None:
    """``audio`` as a path relative to ``output``'s folder (so the pair can be moved together, and
    the Blender add-on finds the sound beside the animation); unchanged when on another drive."""
    import os

    if not audio:
        return audio
    try:
        return Path(os.path.relpath(Path(audio).resolve(), output.resolve().parent)).as_posix()
    except ValueError:
        return audio


def write_animation(anim: Any, avatar: Any, output: Path) -> None:
    """Write ``anim`` by suffix: .glb (with the avatar mesh), .csv (Live Link Face), else .json/.npz;
    the audio path written is relative to ``output``'s folder."""
    import dataclasses

    anim = dataclasses.replace(anim, audio=audio_relative_to(anim.audio, output))
    suffix = output.suffix.lower()
    if suffix == ".glb":
        anim.to_gltf(avatar, output)
    elif suffix == ".csv":
        from face3d.animation.livelink import write_livelink_csv

        write_livelink_csv(anim, output)
    else:
        anim.save(output)


def animate_cmd(
    audio: Annotated[Path, typer.Option("--audio", help="Speech: WAV/FLAC/OGG/MP3, any rate, mono or stereo.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="talk.glb (animated avatar), .json/.npz (Animation) or .csv (Live Link Face).")],
    text: Annotated[Optional[str], typer.Option("--text", help="Transcript: forced alignment instead of recognition.")] = None,
    recognizer: Annotated[str, typer.Option("--recognizer", help="Without --text: 'words' (pocketsphinx's recognised words aligned to the audio, read with face3d's viseme classifier; the default), 'fused' (the classifier fused with pocketsphinx's phones), 'classifier' (the classifier alone) or 'pocketsphinx' (phone recognition alone).")] = "words",
    avatar: Annotated[str, typer.Option("--avatar", help="A 'face3d reconstruct' output folder, a model name (default, basic, ict) or a model .npz.")] = "default",
    video: Annotated[Optional[Path], typer.Option("--video", help="Also render a preview MP4 with the audio.")] = None,
    fps: Annotated[float, typer.Option("--fps", help="Animation frame rate.")] = 30.0,
    blink: Annotated[bool, typer.Option("--blink/--no-blink", help="Add natural eye blinks.")] = True,
    size: Annotated[int, typer.Option("--size", help="Preview video size in pixels (even).")] = 512,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON summary.")] = False,
) -> None:
    """Lip-sync an avatar to speech: timed visemes (forced alignment, or recognised) -> ARKit blendshape weights."""
    from face3d.animation.avatar import load_avatar
    from face3d.animation.lipsync import animate_audio

    from face3d.animation.lipsync import check_lipsync_args

    check_animation_output(output)
    check_lipsync_args(fps, text)  # before loading anything
    if video is not None:
        from face3d.fitting.stages import check_setting
        from face3d.io.atomic import check_output_file

        check_output_file(video)
        check_setting("argument 'size'", size, ("int", 64, 4096))
    t0 = time.perf_counter()
    av = load_avatar(avatar)
    t1 = time.perf_counter()
    anim = animate_audio(audio, text=text, fps=fps, blink=blink, recognizer=recognizer)
    t_anim = time.perf_counter() - t1
    write_animation(anim, av, output)
    if video is not None:
        from face3d.animation.preview import write_preview

        write_preview(anim, av, video, size=size)
    summary = {"output": str(output), "video": str(video) if video else None, "frames": anim.n_frames, "fps": anim.fps,
               "duration_s": round(anim.duration, 3), "phonemes": len(anim.meta["phonemes"]),
               "viseme_segments": len(anim.meta["viseme_segments"]),
               "method": anim.meta["phoneme_method"], "avatar": av.name, "seconds": round(time.perf_counter() - t0, 2),
               "lipsync_seconds": round(t_anim, 2), "notes": list(anim.meta.get("notes", []))}
    for note in summary["notes"]:
        typer.echo(f"warning: {note}", err=True)
    if as_json:
        typer.echo(json.dumps(summary, indent=1))
    else:
        typer.echo(f"wrote {output} ({anim.n_frames} frames at {anim.fps:g} fps, {summary['viseme_segments']} viseme segments by "
                   f"{summary['method']}, avatar {av.name}){' and ' + str(video) if video else ''} in {summary['seconds']} s")


def register(app: typer.Typer) -> None:
    app.command("animate", epilog=EPILOG)(animate_cmd)
