"""Reconstruct a photo, then render a turntable GIF of the textured head.

    python examples/reconstruct_turntable.py                      # scikit-image's astronaut -> out/turntable/
    python examples/reconstruct_turntable.py photo.jpg -o out/me --frames 48 --size 384

Writes OUT/head/ (what ``face3d reconstruct`` writes) and OUT/turntable.gif: the head turning
from one side to the other: a head-pose animation rendered by ``face3d.animation.preview.render_frames``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def turntable(avatar: object, frames: int = 36, size: int = 256, max_yaw: float = 60.0) -> np.ndarray:
    """(frames, size, size, 3) uint8: ``avatar`` (a reconstruction folder, model name or Avatar) turning
    its head from ``-max_yaw`` to ``+max_yaw`` degrees and back."""
    import face3d
    from face3d.animation.preview import render_frames

    t = np.arange(frames) / frames
    pose = np.zeros((frames, 3), np.float32)
    pose[:, 1] = np.radians(max_yaw) * np.sin(2 * np.pi * t)  # yaw about +Y (docs/conventions.md)
    return render_frames(face3d.Animation(fps=frames / 3.0, head_pose=pose), avatar, size=size)


def main(argv: list[str] | None = None) -> Path:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("photo", nargs="?", help="a photo of a face (default: scikit-image's astronaut)")
    ap.add_argument("-o", "--out", type=Path, default=Path("out/turntable"))
    ap.add_argument("--model", default="default", help="default, basic, ict, ...")
    ap.add_argument("--frames", type=int, default=36)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--texture-resolution", type=int, default=1024)
    args = ap.parse_args(argv)

    import imageio.v3 as iio

    import face3d

    if args.photo:
        photo = args.photo
    else:
        from skimage import data

        photo = data.astronaut()
    rec = face3d.reconstruct(photo, model=args.model, texture_resolution=args.texture_resolution)
    print(f"fitted {args.model}: landmark error {rec.landmark_error:.1%} of the eye distance")
    folder = rec.save(args.out / "head", overwrite=True)
    frames = turntable(folder, args.frames, args.size)
    gif = args.out / "turntable.gif"
    iio.imwrite(gif, frames, duration=3000 / args.frames, loop=0)
    print(f"wrote {folder} and {gif} ({args.frames} frames)")
    return gif


if __name__ == "__main__":
    main()
