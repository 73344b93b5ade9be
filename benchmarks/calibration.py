"""Landmark-embedding calibration benchmark: the two checks of :mod:`face3d.models.calibrate`.

Per model: ``default`` and ``basic`` with their shipped ``assets/<model>/mediapipe478_embedding.npz``, and ICT-FaceKit
(``parts='face'``, from the shared data) calibrated afresh on its mean face with the default views.

1. MediaPipe against the projected embedding: renders at ``--yaws``, median landmark distance
   as a percentage of the outer-eye-corner distance (target <= 3 %);
2. the model's own iBUG-68 against the 68 derived from its 478 embedding through the
   AFLW2000-fitted map (:func:`face3d.landmarks.mediapipe_to_ibug68`): median, number of points
   under 3 mm, and the median per landmark group, in mm (target <= 3 mm median).

    python benchmarks/calibration.py [--yaws -30,-15,0,15,30] [--resolution 512]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import face3d  # noqa: E402
from face3d.errors import ModelNotFoundError  # noqa: E402
from face3d.models import calibrate as C  # noqa: E402
from face3d.models.model import MorphableModel  # noqa: E402

#: iBUG-68 landmark groups (0-based, half-open ranges).
GROUPS = {"jaw": (0, 17), "brows": (17, 27), "nose": (27, 36), "eyes": (36, 48), "mouth": (48, 68)}


def models(resolution: int) -> list[tuple[str, MorphableModel, str]]:
    """(name, model with a 'mediapipe478' embedding, where the embedding comes from)."""
    out = [("default", face3d.load_model("default"), "shipped asset")]
    basic = face3d.load_model("basic")
    if "mediapipe478" not in basic.embeddings:
        C.attach_embedding(basic, C.ASSET_BASIC)
    out.append(("basic", basic, "shipped asset"))
    try:
        ict = face3d.load_model("ict", parts="face")
    except ModelNotFoundError as exc:
        print(f"skipping ICT: {exc}")
        return out
    t = time.perf_counter()
    tri, bary, _ = C.calibrate_mediapipe_embedding(ict, resolution=resolution)
    ict.set_embedding("mediapipe478", tri, bary)
    out.append(("ict (face)", ict, f"calibrated now, {time.perf_counter() - t:.1f} s"))
    return out


def main() -> None:
    from face3d.testing import use_shared_ict

    use_shared_ict()  # a development checkout: load_model('ict') reads the shared data's ICT-FaceKit
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--yaws", default="-30,-15,0,15,30")
    ap.add_argument("--resolution", type=int, default=512)
    args = ap.parse_args()
    yaws = [float(y) for y in args.yaws.split(",")]
    rows = models(args.resolution)

    print(f"MediaPipe vs projected embedding, % of outer-eye distance ({args.resolution} px renders)\n")
    print("| model | embedding | " + " | ".join(f"yaw {y:+.0f}" for y in yaws) + " | worst |")
    print("|---|---|" + "---|" * (len(yaws) + 1))
    for name, m, src in rows:
        chk = C.check_embedding(m, yaws, resolution=args.resolution)
        cells = [f"{100 * e:.2f}" if ok else "no face" for ok, e in zip(chk.detected, chk.nme)]
        print(f"| {name} | {src} | " + " | ".join(cells) + f" | {100 * chk.worst:.2f} |")

    print("\nOwn iBUG-68 vs the 68 derived from the 478 embedding, mm\n")
    print("| model | median | mean | points < 3 mm | " + " | ".join(GROUPS) + " |")
    print("|---|---|---|---|" + "---|" * len(GROUPS))
    for name, m, _ in rows:
        d = C.compare_ibug68(m) * 1000.0
        groups = " | ".join(f"{np.median(d[a:b]):.1f}" for a, b in GROUPS.values())
        print(f"| {name} | {np.median(d):.2f} | {d.mean():.2f} | {int((d < 3.0).sum())} / 68 | {groups} |")


if __name__ == "__main__":
    main()
