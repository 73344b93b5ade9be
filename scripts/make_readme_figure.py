"""Make the README's picture: photo | fit over the photo | the mesh from three sides | a frame of the talking head.

    OMP_NUM_THREADS=1 python scripts/make_readme_figure.py            # -> docs/images/readme.png (~45 s on one core)

The photo is scikit-image's public-domain astronaut (Eileen Collins, NASA), the one
``face3d reconstruct --demo`` uses; the speech is espeak-ng's (needs espeak-ng). Nothing comes
from ``../shared``. The mesh views and the talking head are the reconstructed avatar rendered by
``face3d.animation.preview.render_frames``: the views turn the head by a head-pose animation.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "docs" / "images" / "readme.png"
SENTENCE = "Open the window, please."


def turn_views(avatar: object, yaws_deg: list[float], size: int) -> list[np.ndarray]:
    """(size, size, 3) uint8 renders of ``avatar`` with its head turned by each yaw (degrees, + to its left)."""
    import face3d
    from face3d.animation.preview import render_frames

    pose = np.zeros((len(yaws_deg), 3), np.float32)
    pose[:, 1] = np.radians(yaws_deg)
    return list(render_frames(face3d.Animation(fps=1, head_pose=pose), avatar, size=size))


def talking_frame(avatar: object, size: int) -> np.ndarray:
    """The frame of the widest-open mouth of ``avatar`` speaking :data:`SENTENCE` (espeak-ng speech)."""
    import face3d
    from face3d.animation.lipsync.espeak import synthesize
    from face3d.animation.preview import render_frames

    sp = synthesize(SENTENCE)
    anim = face3d.animate_audio((sp.audio, sp.rate), text=SENTENCE, blink=False)
    k = int(np.argmax(anim.weight("jawOpen")))
    one = face3d.Animation(fps=anim.fps, arkit=anim.arkit[k : k + 1])
    return render_frames(one, avatar, size=size)[0]


def face_crop(img: np.ndarray, points: np.ndarray, size: int, margin: float = 2.0) -> np.ndarray:
    """A square around the 2-D ``points`` (N, 2) pixels, ``margin`` times their extent, resized to ``size``."""
    h, w = img.shape[:2]
    cx, cy = (points.min(0) + points.max(0)) / 2
    half = min(margin * float((points.max(0) - points.min(0)).max()) / 2, h / 2, w / 2)
    x0 = int(np.clip(cx - half, 0, w - 2 * half))
    y0 = int(np.clip(cy - half, 0, h - 2 * half))
    s = int(2 * half)
    return np.asarray(Image.fromarray(img[y0 : y0 + s, x0 : x0 + s]).resize((size, size), Image.LANCZOS))


def make_figure(out: Path, size: int = 200) -> Path:
    from skimage import data

    import face3d
    from face3d.animation.avatar import load_avatar

    photo = data.astronaut()
    rec = face3d.reconstruct(photo)
    overlay = np.round(rec.render(textured=False) * 255).astype(np.uint8)  # model albedo + fitted light over the photo
    with tempfile.TemporaryDirectory() as tmp:
        avatar = load_avatar(rec.save(Path(tmp) / "astronaut"))
        views = turn_views(avatar, [40.0, 0.0, -40.0], size)
        talk = talking_frame(avatar, size)
    lm = rec.landmarks2d()
    panels = [face_crop(photo, lm, size), face_crop(overlay, lm, size), *views, talk]
    labels = ["photo", "fit over the photo", "mesh, 3 views", "", "", "talking head"]
    strip = Image.fromarray(np.concatenate(panels, 1))
    draw = ImageDraw.Draw(strip)
    for i, label in enumerate(labels):
        draw.text((i * size + 6, size - 16), label, fill=(255, 255, 255), stroke_width=2, stroke_fill=(0, 0, 0))
    out.parent.mkdir(parents=True, exist_ok=True)
    strip.quantize(colors=255, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(out, optimize=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-o", "--output", type=Path, default=OUT)
    ap.add_argument("--size", type=int, default=200, help="panel size in pixels")
    args = ap.parse_args()
    path = make_figure(args.output, args.size)
    print(f"wrote {path} ({path.stat().st_size / 1024:.0f} KB)")


if __name__ == "__main__":
    main()
