"""Benchmark of the synthetic-trained landmark regressor (face3d.synth).

    OMP_NUM_THREADS=1 python benchmarks/regressor.py --weights /work/ckpt/regressor/run0/weights.pt
    OMP_NUM_THREADS=1 python benchmarks/regressor.py --weights W --mediapipe      # + raw MediaPipe on the same split
    OMP_NUM_THREADS=1 python benchmarks/regressor.py --weights W --no-aflw --synthetic 200 --synthetic-textures train
    OMP_NUM_THREADS=1 python benchmarks/regressor.py --weights W --against W0 --synthetic 200   # W − W0, paired bootstrap
    OMP_NUM_THREADS=1 python benchmarks/regressor.py --weights assets/landmarks/regressor68.pt --no-aflw --synthetic 100 --fitted

AFLW2000-3D (``../shared/data/aflw2000_dev``, 300 images, evaluation only, never training), the
3DDFA protocol of its README: square crop around the ground-truth 68 points' box (side × the
regressor's ``box_scale``), 68-point 2D NME = mean point distance / sqrt(w·h) of the ground
truth's box, mean per |yaw| bin (< 30°, 30–60°, 60–90°, from each file's header) and the mean
of the three bins; jaw (0–16) and inner (17–67) NME too. ``--mediapipe`` adds MediaPipe's
raw 478 points mapped to 68 (its own detector boxes; a miss counts as a failure, not in the NME).

Synthetic profiles: ``--synthetic N`` faces from ``face3d.synth`` at |yaw| 60–90° (held-out
seed 555_555, never a training seed; textures baked from the held-out test photos of
``benchmarks/reconstruct.py``), NME against the exact labels with the same normaliser;
``--synthetic-textures train`` dresses the same faces in the training photos' textures instead
(the gap between the two says how much of the training photos' appearance the network learned).
``--synthetic-seed`` draws another held-out set; ``--fitted`` also runs the whole pipeline
(``face3d.reconstruct``: own detector, the shipped regressor, default fit) on the same faces.

Speed: regressor forward on one crop, one CPU thread (median of 50 after warm-up), ms.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from face3d.landmarks.mapping import nme_bbox  # noqa: E402
from face3d.testing import shared_data  # noqa: E402

BINS = ((0.0, 30.0), (30.0, 60.0), (60.0, 90.1))


def read_gt(path: Path) -> tuple[np.ndarray, float]:
    """(68, 3) points and |yaw| degrees from an aflw2000_dev ``.lm68.txt``."""
    text = path.read_text()
    m = re.search(r"yaw\s+(-?[0-9.]+)\s*deg", text)
    if m is None:
        raise ValueError(f"{path}: no yaw in header")
    return np.loadtxt(path), abs(float(m.group(1)))


def part_nme(pred: np.ndarray, gt: np.ndarray, idx: slice) -> float:
    w, h = gt[:, :2].max(0) - gt[:, :2].min(0)
    return float(np.linalg.norm(pred[idx, :2] - gt[idx, :2], axis=1).mean() / np.sqrt(w * h))


def nme_row(yaw: float, pred: np.ndarray, gt: np.ndarray) -> tuple[float, float, float, float]:
    """One face's row for :func:`table`: (|yaw| degrees, NME, jaw (0–16) NME, inner (17–67) NME)."""
    return (yaw, nme_bbox(pred, gt), part_nme(pred, gt, slice(0, 17)), part_nme(pred, gt, slice(17, 68)))


def table(title: str, rows: list[tuple[float, float, float, float]]) -> None:
    """rows: (yaw, nme, jaw, inner) per face."""
    a = np.array(rows)
    print(f"\n{title}")
    print("| |yaw| bin | n | NME % | jaw % | inner % |\n|---|---|---|---|---|")
    means = []
    for lo, hi in BINS:
        sel = (a[:, 0] >= lo) & (a[:, 0] < hi)
        if sel.any():
            means.append(a[sel, 1].mean())
            print(f"| {lo:.0f}–{min(hi, 90):.0f}° | {int(sel.sum())} | {100 * a[sel, 1].mean():.2f} | {100 * a[sel, 2].mean():.2f} | "
                  f"{100 * a[sel, 3].mean():.2f} |")
    print(f"| all images | {len(a)} | {100 * a[:, 1].mean():.2f} | {100 * a[:, 2].mean():.2f} | {100 * a[:, 3].mean():.2f} |")
    print(f"| mean of bins | {len(a)} | **{100 * np.mean(means):.2f}** | | |")


def paired_difference(title: str, rows_a: list[tuple[float, float, float, float]], rows_b: list[tuple[float, float, float, float]],
                      draws: int = 2000) -> tuple[float, float, float]:
    """Print and return B − A of the mean-of-bins NME (percentage points) over the same faces, with a
    95 % interval from a paired bootstrap of the faces within each yaw bin (seed 0)."""
    a, b = np.array(rows_a), np.array(rows_b)
    if a.shape != b.shape or not np.array_equal(a[:, 0], b[:, 0]):
        raise ValueError("paired_difference: the two runs must read the same faces")
    rng = np.random.default_rng(0)
    bins = [np.flatnonzero((a[:, 0] >= lo) & (a[:, 0] < hi)) for lo, hi in BINS]
    bins = [i for i in bins if len(i)]
    d = b[:, 1] - a[:, 1]
    point = float(np.mean([d[i].mean() for i in bins]))
    boot = [np.mean([d[rng.choice(i, len(i))].mean() for i in bins]) for _ in range(draws)]
    lo, hi = np.percentile(boot, [2.5, 97.5])
    print(f"{title}: {100 * point:+.2f} points (95 % paired bootstrap {100 * lo:+.2f} to {100 * hi:+.2f})")
    return 100 * point, 100 * float(lo), 100 * float(hi)


def aflw_regressor(reg, folder: Path, refine: int, mirror: bool) -> list[tuple[float, float, float, float]]:  # type: ignore[no-untyped-def]
    from face3d.io.images import load_image

    rows = []
    for gt_path in sorted(folder.glob("*.lm68.txt")):
        gt, yaw = read_gt(gt_path)
        img = load_image(str(gt_path.with_name(gt_path.name.replace(".lm68.txt", ".jpg"))))
        pred = reg.predict(img, gt[:, :2], refine=refine, mirror=mirror).landmarks
        rows.append(nme_row(yaw, pred, gt))
    return rows


def aflw_mediapipe(folder: Path) -> tuple[list[tuple[float, float, float, float]], int]:
    from face3d.errors import Face3DError
    from face3d.landmarks.detector import detect_landmarks
    from face3d.io.images import load_image

    rows, misses = [], 0
    for gt_path in sorted(folder.glob("*.lm68.txt")):
        gt, yaw = read_gt(gt_path)
        try:
            face = detect_landmarks(load_image(str(gt_path.with_name(gt_path.name.replace(".lm68.txt", ".jpg")))), which="largest",
                                    learned=False)[0]
        except Face3DError:
            misses += 1
            continue
        pred = face.ibug68()
        rows.append(nme_row(yaw, pred, gt))
    return rows, misses


def synthetic_profiles(reg, n: int, model: str, refine: int, mirror: bool, textures: str = "test",  # type: ignore[no-untyped-def]
                       seed: int = 555_555, fitted: list | None = None) -> list[tuple[float, float, float, float]]:
    """``n`` faces at |yaw| 60–90° wearing the benchmark's held-out real-photo textures
    (``benchmarks/reconstruct.py``'s test split, never the albedo space's training photos the
    regressor saw; ``textures='train'``: those training photos instead, to measure how much the
    network learned their appearance), placed in a 640-px frame and read by
    :meth:`LandmarkRegressor.predict` from the box of the exact points (the protocol's box), NME
    against the exact labels. ``fitted``: a list that receives, per face, the row of the whole
    pipeline (``face3d.reconstruct``: our own detector, the shipped regressor, default fit, no
    texture; the fitted ``ibug68``), or None where it found no face."""
    from face3d.synth.generator import SynthConfig
    from face3d.synth.shards import make_synthesizer, sample_rng
    from face3d.synth.sources import BakedTextures

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from reconstruct import test_textures  # noqa: E402

    synth = make_synthesizer(model, "skimage", 256)
    if textures == "train":
        from face3d.synth.calibrate import training_textures

        synth.albedo = BakedTextures(training_textures())
    else:
        synth.albedo = BakedTextures([t["texture"] for _, t in test_textures()])
    synth.config = SynthConfig(crop_size=256, box_scale=(2.0, 2.6))  # a wide view; the regressor crops it itself
    rows = []
    for i in range(n):
        rng = sample_rng(seed, i)
        sign = 1 if i % 2 == 0 else -1
        s = synth.sample(rng, yaw_deg=(60.0, 90.0) if sign > 0 else (-90.0, -60.0))
        gt = s.landmarks68.astype(np.float64)
        pred = reg.predict(s.image, gt, refine=refine, mirror=mirror).landmarks
        rows.append(nme_row(abs(float(s.euler_deg[1])), pred, gt))
        if fitted is not None:
            fitted.append(_fitted_row(s.image, gt, abs(float(s.euler_deg[1]))))
    return rows


def _fitted_row(image: np.ndarray, gt: np.ndarray, yaw: float) -> tuple[float, float, float, float] | None:
    """One face through ``face3d.reconstruct`` (default model and fit, no texture or detail): the
    fitted ibug68's (yaw, NME, jaw NME, inner NME) against ``gt``, or None when no face is found."""
    import face3d
    from face3d.errors import Face3DError

    try:
        rec = face3d.reconstruct(image, texture=False, detail=False)
    except Face3DError:
        return None
    return nme_row(yaw, rec.landmarks2d("ibug68").astype(np.float64), gt)


def speed_ms(reg) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    """Median wall and CPU (process) time per forward, ms; CPU time is what an idle core would take."""
    import torch

    torch.set_num_threads(1)
    crop = np.random.default_rng(0).integers(0, 255, (1, reg.input_size, reg.input_size, 3), dtype=np.uint8)
    for _ in range(5):
        reg.predict_crops(crop)
    ts, cs = [], []
    for _ in range(50):
        t, c = time.perf_counter(), time.process_time()
        reg.predict_crops(crop)
        ts.append(time.perf_counter() - t)
        cs.append(time.process_time() - c)
    return 1000 * float(np.median(ts)), 1000 * float(np.median(cs))


def main(argv: list[str] | None = None) -> int:
    from face3d.testing import use_shared_ict

    use_shared_ict()  # a development checkout: load_model('ict') reads the shared data's ICT-FaceKit
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", required=True, help="weights.pt or last.pt written by face3d.synth.train")
    ap.add_argument("--synthetic", type=int, default=100, help="synthetic profile faces (0: skip)")
    ap.add_argument("--mediapipe", action="store_true", help="also raw MediaPipe on aflw2000_dev")
    ap.add_argument("--synthetic-textures", default="test", choices=("test", "train"),
                    help="textures of the synthetic profiles: held-out test photos, or the training photos (the overfitting gap)")
    ap.add_argument("--no-aflw", action="store_true", help="skip AFLW2000 (synthetic profiles only)")
    ap.add_argument("--against", default=None, help="second weights: print the paired difference (these − those) with a bootstrap interval")
    ap.add_argument("--model", default="default", help="model rendering the synthetic faces")
    ap.add_argument("--refine", type=int, default=1, help="re-crops around the previous answer")
    ap.add_argument("--no-mirror", action="store_true", help="no mirrored second reading")
    ap.add_argument("--synthetic-seed", type=int, default=555_555, help="seed of the synthetic profiles (never a training seed)")
    ap.add_argument("--fitted", action="store_true", help="also the whole pipeline on the synthetic profiles (own detector, "
                    "shipped regressor, default fit): the fitted 68 points")
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    from face3d.landmarks.regressor import LandmarkRegressor

    reg = LandmarkRegressor.load(args.weights)
    folder = shared_data() / "aflw2000_dev"
    print(f"regressor {args.weights}: input {reg.input_size} px, width {reg.net.config.width}, box scale {reg.box_scale}")
    wall, cpu = speed_ms(reg)
    print(f"speed: {wall:.2f} ms wall, {cpu:.2f} ms CPU per face crop (forward, 1 CPU thread, median of 50)")
    mirror = not args.no_mirror
    print(f"reading: refine {args.refine}, mirror {mirror}")
    other = LandmarkRegressor.load(args.against) if args.against else None
    if not args.no_aflw:
        rows = aflw_regressor(reg, folder, args.refine, mirror)
        table("AFLW2000-3D dev (300), regressor, boxes from the ground-truth points", rows)
        if other is not None:
            paired_difference(f"AFLW2000-3D dev, mean of bins, {args.weights} − {args.against}", aflw_regressor(other, folder, args.refine, mirror), rows)
    if args.mediapipe:
        rows, misses = aflw_mediapipe(folder)
        table(f"AFLW2000-3D dev, raw MediaPipe 478 -> 68 (own detector; {misses} images without a face, not counted)", rows)
    if args.synthetic:
        which = "held-out real-photo" if args.synthetic_textures == "test" else "the regressor's TRAINING photo"
        fitted: list | None = [] if args.fitted else None
        rows = synthetic_profiles(reg, args.synthetic, args.model, args.refine, mirror, args.synthetic_textures, args.synthetic_seed, fitted)
        table(f"synthetic profiles |yaw| 60–90° ({args.synthetic} faces, seed {args.synthetic_seed}, {which} textures), regressor", rows)
        if fitted is not None:
            found = [r for r in fitted if r is not None]
            table(f"the same faces through face3d.reconstruct (own detector, default fit; {len(fitted) - len(found)} without a face, "
                  "not counted), fitted 68 points", found)
            table("the regressor's rows of those faces", [r for r, f in zip(rows, fitted) if f is not None])
        if other is not None:
            paired_difference(f"synthetic profiles, {args.weights} − {args.against}",
                              synthetic_profiles(other, args.synthetic, args.model, args.refine, mirror, args.synthetic_textures,
                                                 args.synthetic_seed), rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
