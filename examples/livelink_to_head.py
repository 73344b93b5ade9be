"""ARKit curves from a Live Link Face CSV onto a reconstructed head: an animated GLB (and an MP4).

    python examples/livelink_to_head.py take.csv --avatar out/ -o out/take.glb   # a Live Link Face recording
    python examples/livelink_to_head.py -o out/take.glb --video out/take.mp4      # a made-up take, default head

Live Link Face (the iPhone app) records the 52 ARKit blendshape curves and the head's
yaw/pitch/roll per frame. Without a CSV this script writes a short take of its own (a smile, a
jaw opening, two blinks, a head turn) with ``face3d.animation.livelink.write_livelink_csv`` and reads it
back, so the whole round trip runs. ``--avatar`` takes a ``face3d reconstruct`` output folder
(your head), a model name or a model file.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def made_up_take(seconds: float = 2.0, fps: float = 30.0) -> object:
    """A ``face3d.Animation``: smile, then jaw open, two blinks and a small head turn."""
    import face3d
    from face3d.arkit import ARKIT_NAMES

    t = np.arange(int(seconds * fps)) / fps
    w = np.zeros((t.size, 52), np.float32)

    def bump(centre: float, width: float) -> np.ndarray:
        return np.exp(-0.5 * ((t - centre) / width) ** 2).astype(np.float32)

    for name in ("mouthSmileLeft", "mouthSmileRight"):
        w[:, ARKIT_NAMES.index(name)] = 0.8 * bump(0.5, 0.2)
    w[:, ARKIT_NAMES.index("jawOpen")] = 0.7 * bump(1.3, 0.2)
    for name in ("eyeBlinkLeft", "eyeBlinkRight"):
        w[:, ARKIT_NAMES.index(name)] = np.maximum(bump(0.3, 0.04), bump(1.6, 0.04))
    pose = np.zeros((t.size, 3), np.float32)
    pose[:, 1] = 0.3 * np.sin(np.pi * t / seconds)  # yaw, radians
    return face3d.Animation(fps=fps, arkit=w, head_pose=pose)


def main(argv: list[str] | None = None) -> Path:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("csv", nargs="?", type=Path, help="a Live Link Face CSV (default: write a made-up take)")
    ap.add_argument("--avatar", default="default", help="a 'face3d reconstruct' folder, a model name or file")
    ap.add_argument("-o", "--out", type=Path, default=Path("out/take.glb"))
    ap.add_argument("--video", type=Path, help="also render an MP4 preview")
    ap.add_argument("--size", type=int, default=256)
    args = ap.parse_args(argv)

    import face3d
    from face3d.animation.avatar import load_avatar
    from face3d.animation.livelink import write_livelink_csv

    args.out.parent.mkdir(parents=True, exist_ok=True)
    csv = args.csv
    if csv is None:
        csv = write_livelink_csv(made_up_take(), args.out.with_suffix(".csv"))
        print(f"wrote a made-up Live Link take to {csv}")
    anim = face3d.Animation.load(csv)  # Live Link CSVs are read by their header
    avatar = load_avatar(args.avatar)
    anim.to_gltf(avatar, args.out)
    print(f"wrote {args.out}: {anim.n_frames} frames at {anim.fps:g} fps on avatar {avatar.name}, "
          f"peak jawOpen {anim.weight('jawOpen').max():.2f}")
    if args.video:
        from face3d.animation.preview import write_preview

        write_preview(anim, avatar, args.video, size=args.size)
        print(f"wrote {args.video}")
    return args.out


if __name__ == "__main__":
    main()
