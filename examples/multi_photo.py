"""Fit several photos of one person: one identity, a pose and an expression per photo.

    python examples/multi_photo.py a.jpg b.jpg c.jpg -o out/person
    python examples/multi_photo.py                      # the astronaut, mirrored and re-framed copies of it

Prints each photo's landmark error and head yaw, checks that all fits share one identity, and
writes one folder per photo (as ``face3d reconstruct a.jpg b.jpg -o OUT`` does).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def demo_photos() -> list[np.ndarray]:
    """Three views standing in for three photos of one person: scikit-image's astronaut, its
    mirror image, and a tighter, shifted crop of it."""
    from skimage import data

    photo = data.astronaut()
    return [photo, np.ascontiguousarray(photo[:, ::-1]), np.ascontiguousarray(photo[20:420, 60:460])]


def main(argv: list[str] | None = None) -> list:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("photos", nargs="*", help="photos of one person (default: views of the astronaut)")
    ap.add_argument("-o", "--out", type=Path, default=Path("out/person"))
    ap.add_argument("--model", default="default")
    ap.add_argument("--texture-resolution", type=int, default=1024)
    args = ap.parse_args(argv)

    import face3d
    from face3d.result import euler_degrees, save_many

    photos = args.photos or demo_photos()
    recs = face3d.reconstruct(photos, model=args.model, texture_resolution=args.texture_resolution)
    for i, rec in enumerate(recs):
        _, yaw, _ = euler_degrees(rec.pose)
        print(f"photo {i}: landmark error {rec.landmark_error:.1%}, yaw {yaw:+.1f} deg")
    assert all(np.array_equal(r.shape, recs[0].shape) for r in recs), "one person, one identity"
    folder = save_many(recs, args.out, overwrite=True)
    print(f"wrote {folder}")
    return recs


if __name__ == "__main__":
    main()
