"""Development check of the learned landmarks in the fit (how ``FitConfig.w_learned`` was chosen).

    OMP_NUM_THREADS=1 python benchmarks/learned_dev.py --n 60 --weights 0,30,100

Faces from ``face3d.synth`` over the whole yaw range (±90°), wearing the generator's training mix of
albedos (``--albedo mixed``: smooth skin, the albedo space, textures baked from the albedo space's
*training* photos), seed 777_777 (neither a training seed nor the benchmark's 555_555); never the
benchmark's held-out test textures, never AFLW2000. Each face goes through ``detect_landmarks`` (the
shipped regressor, or ``--regressor PATH``) and the default fit at each weight; printed: 68-point
NME (3D convention, exact labels, over sqrt(w·h) of the label box) per |yaw| bin for raw MediaPipe
(478 → 68 map), the raw regressor and the fit at each weight. Because the regressor was trained on
this kind of face, its raw row is flattered here; the held-out checks are ``benchmarks/regressor.py``
and ``benchmarks/reconstruct.py --section aflw|synthetic``.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

BINS = ((0.0, 30.0), (30.0, 60.0), (60.0, 90.1))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=60)
    ap.add_argument("--weights", default="0,30,100", help="w_learned values, comma-separated")
    ap.add_argument("--regressor", default=None, help="a checkpoint instead of the shipped weights")
    args = ap.parse_args(argv)
    if args.regressor:
        os.environ["FACE3D_REGRESSOR"] = args.regressor
    import torch

    from face3d.errors import Face3DError
    from face3d.fitting import FitConfig, FitTarget, fit
    from face3d.fitting.camera import intrinsics, project
    from face3d.landmarks.detector import detect_landmarks
    from face3d.landmarks.mapping import mediapipe_to_ibug68, nme_bbox
    from face3d.reconstruction import get_model
    from face3d.synth.generator import SynthConfig
    from face3d.synth.shards import make_synthesizer, sample_rng
    from face3d.testing import use_shared_ict

    use_shared_ict()
    torch.set_num_threads(1)
    ws = [float(x) for x in args.weights.split(",")]
    size = 320
    synth = make_synthesizer("default", "skimage", size, "mixed")
    synth.config = SynthConfig(crop_size=size, box_scale=(2.0, 2.6), occluder_prob=0.2)
    model = get_model("default")
    rows: dict[str, list[float]] = {"raw MediaPipe": [], "raw regressor": [], **{f"fit, w_learned {w:g}": [] for w in ws}}
    yaws, missed = [], 0
    for i in range(args.n):
        s = synth.sample(sample_rng(777_777, i))
        gt = s.landmarks68.astype(np.float64)
        try:
            det = detect_landmarks(s.image, which="largest")[0]
        except Face3DError:
            missed += 1
            continue
        if det.learned68 is None:
            raise SystemExit("no regressor weights: run python -m face3d.synth.train (recipe in its docstring) or pass --regressor")
        yaws.append(abs(float(s.euler_deg[1])))
        mp = mediapipe_to_ibug68(det.points.astype(np.float64))[:, :2] if det.scheme == "mediapipe478" else None
        rows["raw MediaPipe"].append(nme_bbox(mp, gt) if mp is not None else np.nan)
        rows["raw regressor"].append(nme_bbox(det.learned68[:, :2].astype(np.float64), gt))
        for w in ws:
            r = fit(model, [FitTarget(det.points, det.scheme, size, size, s.image.astype(np.float32) / 255, det.learned68)],
                    FitConfig(w_learned=w))
            with torch.no_grad():
                v = model(shape=r.shape, expression=r.expression, pose=r.pose) + r.translation[:, None]
                pred = project(model.landmarks(v, "ibug68"), intrinsics(r.focal, float(size), float(size)))[0].numpy()
            rows[f"fit, w_learned {w:g}"].append(nme_bbox(pred, gt))
    y = np.array(yaws)
    print(f"\n{len(y)} of {args.n} development faces with a face found; 68-point NME %, per |yaw| bin")
    print("| | 0–30° | 30–60° | 60–90° | mean of bins | all |\n|---|---|---|---|---|---|")
    for name, vals in rows.items():
        v = 100 * np.array(vals)
        bins = [np.nanmean(v[(y >= lo) & (y < hi)]) for lo, hi in BINS]
        print(f"| {name} | " + " | ".join(f"{b:.2f}" for b in bins) + f" | **{np.mean(bins):.2f}** | {np.nanmean(v):.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
