"""Train the landmark regressor on synthetic shards (never on AFLW2000 or the shared photos).

``python -m face3d.synth.train --out DIR --hours H --seed 0 [--shards SHARD_DIR] [--generate N] [--prepare N]``

The shipped weights (``assets/landmarks/regressor68.pt``) come from four runs: one on a fixed
data set, a fine-tune of it with :class:`Augment` on, a second augmented fine-tune over the same
shards plus 160 new ones whose faces wear region-mixed, mirrored, recoloured training-photo
textures (``--albedo mix2``, :class:`face3d.synth.sources.RegionMixAlbedo`; issue 24), and a
longer third one over the same 320 shards (a 99-minute budget, the learning rate on a cosine over
that time)::

    python -m face3d.synth.train --out runs/regressor --prepare 160 --albedo mixed --model default \
        --input-size 96 --width 0.5 --batch 64 --threads 2 --lr 2e-3 --pool 65536 --steps 6000 --hours 3
    python -m face3d.synth.train --out runs/regressor-aug --shards runs/regressor/shards \
        --init runs/regressor/weights.pt --augment --albedo mixed --model default \
        --input-size 96 --width 0.5 --batch 64 --threads 1 --lr 1e-3 --pool 65536 --steps 4000 --hours 2
    for s in 2400 2401; do python -m face3d.synth.shards --out runs/mix2/shards --shards 80 --n 256 --seed $s \
        --model default --crop-size 96 --albedo mix2; done
    mkdir -p runs/mix2/all && ln -s "$PWD"/runs/regressor/shards/shard_*.npz "$PWD"/runs/mix2/shards/shard_*.npz runs/mix2/all/
    python -m face3d.synth.train --out runs/mix2 --shards runs/mix2/all \
        --init runs/regressor-aug/weights.pt --augment --albedo mixed --model default \
        --input-size 96 --width 0.5 --batch 64 --threads 1 --lr 1e-3 --pool 81920 --steps 4000 --hours 1.2
    python -m face3d.synth.train --out runs/mix2-long --shards runs/mix2/all \
        --init runs/mix2/weights.pt --augment --albedo mixed --model default \
        --input-size 96 --width 0.5 --batch 64 --threads 1 --lr 7e-4 --pool 81920 --hours 1.65
    python -m face3d.synth.train --export runs/mix2-long/weights.pt assets/landmarks/regressor68.pt

(about four and a quarter hours on this 2-core CPU: 14 min of data, 6000 steps at ~1.3–2.8 steps/s,
4000 steps at ~1.9 steps/s in 38 min, 20 min for the 160 mix2 shards on one core (~37 samples/s
per busy core), 4000 steps at ~2.4 steps/s in 27 min, then 12486 steps at ~1.6–2.4 steps/s in
the 99-minute budget (a time-budgeted run's step count and learning-rate curve depend on the
machine's load, so it reproduces the weights only approximately; ``--steps 12486`` instead of
``--hours`` runs the same number of steps on a step-based cosine); on a GPU add ``--device cuda --batch
256 --lr 4e-3`` and raise ``--steps``/``--prepare``). ``--albedo`` of a training run only picks
the validation shard's albedo (and that of ``--prepare``/``--generate`` writers): the last run keeps
``mixed`` so its validation NME compares with the earlier runs'.

Reads every ``shard_*.npz`` in ``--shards`` (default DIR/shards), re-scanning for new ones every
few minutes and keeping the newest ``--pool`` samples in memory; ``--generate N`` starts N
background shard writers (``face3d.synth.shards``, niced) that keep filling that folder while it
trains, so data is made on the fly. Training: AdamW, cosine learning rate over ``--steps`` or,
without it, over the time budget (wall-clock, summed over resumes), Gaussian NLL (``regressor.gaussian_nll``), random mirror
flips. Every ``--ckpt-minutes`` it writes DIR/last.pt (weights, optimiser, step, elapsed time,
RNG state) atomically and resumes from it when started again with the same DIR; it logs to
DIR/train.log and, when the budget or the step count is spent, writes DIR/weights.pt (weights only, for
``LandmarkRegressor.load``) and stops. A held-out synthetic validation shard (seed 999_999, not
in the training seeds) is scored on each checkpoint: NME of the 68 points over the crop size.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from face3d.landmarks.regressor import FLIP68, MEAN, STD, LandmarkNet, RegressorConfig, checkpoint_state, gaussian_nll, normalise_images, to_normalised
from face3d.synth.shards import ALBEDO_CHOICES

VAL_SEED = 999_999


class ShardPool:
    """Training samples from the shards in ``folder``: the newest ``capacity`` samples in memory."""

    def __init__(self, folder: Path, capacity: int) -> None:
        self.folder, self.capacity = folder, capacity
        self.loaded: list[str] = []
        self.images = np.zeros((0, 1, 1, 3), np.uint8)
        self.points = np.zeros((0, 68, 2), np.float32)

    def refresh(self) -> int:
        """Load shards not seen yet; returns how many were added."""
        from face3d.synth.shards import read_shard

        new = [p for p in sorted(self.folder.glob("shard_*.npz")) if p.name not in self.loaded]
        imgs, pts = [self.images], [self.points]
        for p in new:
            d = read_shard(p)
            imgs.append(d["images"])
            pts.append(d["landmarks68"].astype(np.float32))
            self.loaded.append(p.name)
        if new:
            if self.images.shape[0] == 0:
                imgs, pts = imgs[1:], pts[1:]
            self.images = np.concatenate(imgs)[-self.capacity:]
            self.points = np.concatenate(pts)[-self.capacity:]
        return len(new)

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def batch(self, rng: np.random.Generator, n: int, aug: Augment | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """A random batch: (n, 3, S, S) network input and (n, 68, 2) normalised targets, half
        mirrored, then :func:`augment`-ed when ``aug`` is given."""
        idx = rng.integers(0, len(self), n)
        img, pts = self.images[idx].copy(), self.points[idx].copy()
        S = img.shape[1]
        flip = rng.random(n) < 0.5
        img[flip] = img[flip][:, :, ::-1]
        pts[flip] = pts[flip][:, FLIP68]
        pts[flip, :, 0] = S - pts[flip, :, 0]
        x, y = normalise_images(img), to_normalised(pts, S)
        return augment(x, y, rng, aug) if aug is not None else (x, y)


@dataclass(frozen=True)
class Augment:
    """Per-sample augmentation on top of the renders (``train --augment``): the crop moved as a
    detector's box would move it, and the photo's colour as real cameras and prints change it.
    Ranges are uniform; ``shift`` in normalised crop units (the crop spans 2)."""

    scale: tuple[float, float] = (0.9, 1.1)
    shift: float = 0.08
    rotate_deg: float = 10.0
    gain: tuple[float, float] = (0.8, 1.2)
    contrast: tuple[float, float] = (0.7, 1.3)
    gamma: tuple[float, float] = (0.7, 1.4)
    grey: float = 0.2
    """Probability of a grey-scale photo (real data sets hold black-and-white pictures)."""


def augment(x: torch.Tensor, y: torch.Tensor, rng: np.random.Generator, aug: Augment) -> tuple[torch.Tensor, torch.Tensor]:
    """Augment network inputs ``x`` (B, 3, S, S) (:func:`normalise_images` units) and their targets
    ``y`` (B, 68, 2) normalised crop coordinates: zoom, shift and roll of the crop (bilinear,
    border pixels repeated; the points move with it), then per-image gamma, contrast, channel gains and
    grey-scale. Parameters come from ``rng`` (reproducible)."""
    B = x.shape[0]
    u = lambda lo, hi, *shape: torch.as_tensor(rng.uniform(lo, hi, shape or (B,)), dtype=torch.float32)  # noqa: E731
    s, ang = u(*aug.scale), torch.deg2rad(u(-aug.rotate_deg, aug.rotate_deg))
    t = u(-aug.shift, aug.shift, B, 2)
    c, sn = torch.cos(ang), torch.sin(ang)
    rot = torch.stack([torch.stack([c, -sn], -1), torch.stack([sn, c], -1)], -2)  # (B, 2, 2)
    # output coordinate o samples the input at i = R o / s + t, so a point i lands at o = s R^T (i - t)
    theta = torch.cat([rot / s[:, None, None], t[:, :, None]], -1)
    grid = torch.nn.functional.affine_grid(theta, list(x.shape), align_corners=False)
    img = torch.nn.functional.grid_sample(x * STD + MEAN, grid, mode="bilinear", padding_mode="border", align_corners=False)
    y = s[:, None, None] * torch.einsum("bji,bkj->bki", rot, y - t[:, None, :])
    img = img.clamp(0, 1) ** u(*aug.gamma)[:, None, None, None]
    mean = img.mean((1, 2, 3), keepdim=True)
    img = (img - mean) * u(*aug.contrast)[:, None, None, None] + mean
    img = img * u(*aug.gain, B, 3)[:, :, None, None]
    grey = torch.as_tensor(rng.random(B) < aug.grey)
    lum = (0.299 * img[:, 0] + 0.587 * img[:, 1] + 0.114 * img[:, 2])[:, None].expand_as(img)
    img = torch.where(grey[:, None, None, None], lum, img).clamp(0, 1)
    return (img - MEAN) / STD, y


def nme(pred: torch.Tensor, target: torch.Tensor) -> float:
    """Mean point distance / 2 (normalised coords span 2 = the crop side): NME over the crop size."""
    return float(((pred - target) ** 2).sum(-1).sqrt().mean() / 2)


def _plain(state: dict[str, Any]) -> dict[str, Any]:
    """numpy's generator state with numpy integers made Python ints, so that a checkpoint loads
    with ``torch.load(weights_only=True)`` (what :meth:`LandmarkRegressor.load` uses)."""
    return {k: _plain(v) if isinstance(v, dict) else (int(v) if isinstance(v, np.integer) else v) for k, v in state.items()}


def _save(path: Path, state: dict[str, Any]) -> None:
    from face3d.io.atomic import atomic_path

    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def _ensure_val(out: Path, args: argparse.Namespace) -> Path:
    from face3d.synth.shards import make_synthesizer, write_shard

    path = out / "val.npz"
    if not path.exists():
        write_shard(path, make_synthesizer(args.model, "skimage", args.input_size, args.albedo), args.val_n, VAL_SEED)
    return path


def _shard_cmd(args: argparse.Namespace, shards: Path, count: int, seed: int, n: int) -> list[str]:
    return ["nice", "-n", "5", sys.executable, "-m", "face3d.synth.shards", "--out", str(shards), "--shards", str(count), "--n", str(n),
            "--seed", str(seed), "--model", args.model, "--crop-size", str(args.input_size), "--albedo", args.albedo]


def _prepare(args: argparse.Namespace, shards: Path) -> None:
    """Write ``args.prepare`` shards of ``args.generate_n`` samples before training, split over
    ``args.workers`` processes (worker w: seed 1000 + w, shards 0..⌈N/W⌉-1): a fixed data set, so a
    run with ``--steps`` reproduces its weights. Shards already there are kept."""
    per = -(-args.prepare // args.workers)
    procs = [subprocess.Popen(_shard_cmd(args, shards, per, 1000 + w, args.generate_n), stdout=subprocess.DEVNULL, start_new_session=True)
             for w in range(args.workers)]
    failed = [p.args for p in procs if p.wait() != 0]
    if failed:
        raise SystemExit(f"shard writers failed: {failed}")


def _start_generators(args: argparse.Namespace, shards: Path) -> list[subprocess.Popen]:
    return [subprocess.Popen(_shard_cmd(args, shards, 100000, 2000 + 10 * args.seed + k, args.generate_n), stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, start_new_session=True) for k in range(args.generate)]


def train(args: argparse.Namespace) -> Path:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    log = open(out / "train.log", "a")

    def say(msg: str) -> None:
        line = f"{time.strftime('%Y-%m-%d %H:%M:%S')} {msg}"
        print(line, flush=True)
        log.write(line + "\n")
        log.flush()

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    dev = torch.device(args.device)
    # channels_last: ~30 % faster training steps on CPU (measured, batch 32, 128 px)
    net = LandmarkNet(RegressorConfig(width=args.width, input_size=args.input_size)).to(dev, memory_format=torch.channels_last)
    opt = torch.optim.AdamW(net.parameters(), lr=args.lr, weight_decay=1e-4)
    rng = np.random.default_rng(args.seed)
    step, elapsed = 0, 0.0
    last = out / "last.pt"
    if args.init and not last.exists():
        net.load_state_dict(torch.load(args.init, map_location=dev, weights_only=True)["model"])
        say(f"initialised from {args.init}")
    if last.exists():
        ck = torch.load(last, map_location=dev, weights_only=False)
        net.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        step, elapsed = int(ck["step"]), float(ck["elapsed"])
        rng.bit_generator.state = ck["rng"]
        torch.set_rng_state(ck["torch_rng"].cpu())
        say(f"resumed from {last} at step {step}, {elapsed / 60:.1f} min done")
    budget = args.hours * 3600.0
    shards = Path(args.shards) if args.shards else out / "shards"
    shards.mkdir(parents=True, exist_ok=True)
    if args.prepare:
        say(f"preparing {args.prepare} shards of {args.generate_n} in {shards} ({args.workers} writers)")
        _prepare(args, shards)
    procs = _start_generators(args, shards) if args.generate else []
    try:
        val = np.load(_ensure_val(out, args))
        S = val["images"].shape[1]
        if S != args.input_size:
            raise SystemExit(f"validation crops are {S} px but --input-size is {args.input_size}")
        val_x, val_y = normalise_images(val["images"]).to(dev), to_normalised(val["landmarks68"], S).to(dev)
        pool = ShardPool(shards, args.pool)
        while pool.refresh() == 0 or len(pool) < args.batch:
            say(f"waiting for shards in {shards}")
            time.sleep(5)
        say(f"training: {len(pool)} samples from {len(pool.loaded)} shards, budget {args.hours} h, step {step}")
        t_last_ckpt = t_last_scan = time.monotonic()
        t0, e0, run_loss, run_n, t_log, c_log = time.monotonic(), elapsed, 0.0, 0, time.monotonic(), time.process_time()
        stop = False
        while not stop:
            elapsed = e0 + time.monotonic() - t0
            frac = min(step / args.steps, 1.0) if args.steps else min(elapsed / budget, 1.0)
            for g in opt.param_groups:
                # a Python float: a numpy one in the optimiser state keeps last.pt from loading with weights_only=True
                g["lr"] = float(args.lr * (0.02 + 0.98 * 0.5 * (1 + np.cos(np.pi * frac))) * min(1.0, (step + 1) / 100))
            net.train()
            x, y = pool.batch(rng, args.batch, Augment() if args.augment else None)
            x, y = x.to(dev, memory_format=torch.channels_last), y.to(dev)
            loss = gaussian_nll(net(x), y)
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), 5.0)
            opt.step()
            step += 1
            run_loss, run_n = run_loss + loss.item(), run_n + 1
            stop = elapsed >= budget or (args.steps is not None and step >= args.steps)
            now = time.monotonic()
            if now - t_log > args.log_seconds:
                say(f"step {step} loss {run_loss / run_n:.4f} lr {opt.param_groups[0]['lr']:.2e} {run_n / (now - t_log):.3f} it/s "
                    f"({run_n * args.batch / (now - t_log):.1f} samples/s), {(time.process_time() - c_log) / run_n:.2f} CPU s/it, "
                    f"pool {len(pool)} elapsed {elapsed / 60:.1f} min")
                run_loss, run_n, t_log, c_log = 0.0, 0, now, time.process_time()
            if now - t_last_scan > 120:
                added = pool.refresh()
                if added:
                    say(f"pool: +{added} shards, {len(pool)} samples")
                t_last_scan = now
            if now - t_last_ckpt > args.ckpt_minutes * 60 or stop:
                net.eval()
                with torch.no_grad():
                    pv = torch.cat([net(val_x[i:i + 64]).points for i in range(0, len(val_x), 64)])
                state = checkpoint_state(net, optimizer=opt.state_dict(), step=step, elapsed=elapsed, rng=_plain(rng.bit_generator.state),
                                         torch_rng=torch.get_rng_state(), args=vars(args))
                _save(last, state)
                say(f"checkpoint step {step}: val NME (crop size) {100 * nme(pv, val_y):.2f} %")
                t_last_ckpt = now
        weights = out / "weights.pt"
        _save(weights, checkpoint_state(net, step=step, elapsed=elapsed, args=vars(args)))
        say(f"done: {step} steps, {elapsed / 60:.1f} min; weights in {weights}")
        return weights
    finally:
        for p in procs:
            os.killpg(p.pid, signal.SIGTERM)
        log.close()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m face3d.synth.train", description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True, help="run folder (checkpoints, log, weights)")
    ap.add_argument("--hours", type=float, required=True, help="wall-clock training budget, summed over resumes")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--steps", type=int, default=None, help="stop after this many steps (learning-rate schedule over steps; "
                    "with pre-made shards this makes a run reproducible); --hours still caps the time")
    ap.add_argument("--shards", default=None, help="folder of shard_*.npz (default OUT/shards)")
    ap.add_argument("--generate", type=int, default=0, help="background shard writers to start")
    ap.add_argument("--generate-n", type=int, default=256, help="samples per shard the background writers make")
    ap.add_argument("--prepare", type=int, default=0, help="write this many shards (fixed seeds) before training")
    ap.add_argument("--workers", type=int, default=2, help="shard writers for --prepare")
    ap.add_argument("--albedo", default="smooth", choices=ALBEDO_CHOICES, help="albedo source of the generated faces")
    ap.add_argument("--model", default="ict")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--width", type=float, default=0.5)
    ap.add_argument("--input-size", type=int, default=128)
    ap.add_argument("--pool", type=int, default=40000, help="samples kept in memory (newest)")
    ap.add_argument("--val-n", type=int, default=128)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu", help="torch device for the network (e.g. cuda); data is made on the CPU")
    ap.add_argument("--init", default=None, help="start from these weights (a weights.pt) instead of random ones")
    ap.add_argument("--augment", action="store_true", help="zoom/shift/roll and colour augmentation of each batch (Augment)")
    ap.add_argument("--ckpt-minutes", type=float, default=5.0)
    ap.add_argument("--log-seconds", type=float, default=60.0)
    return ap.parse_args(argv)


def export_weights(src: str | Path, dst: str | Path) -> Path:
    """Write the network of checkpoint ``src`` (``weights.pt`` or ``last.pt``) as the shipped asset
    ``dst``: weights in float16 (half the bytes; :meth:`LandmarkRegressor.load` reads them back as
    float32), config, step and training arguments; atomically."""
    ck = torch.load(src, map_location="cpu", weights_only=False)
    half = {k: v.half() if v.is_floating_point() else v for k, v in ck["model"].items()}
    state = {"model": half, "config": ck["config"], "step": int(ck["step"]), "args": ck.get("args", {}),
             "made_by": "python -m face3d.synth.train (recipe in its docstring), then --export"}
    _save(Path(dst), state)
    return Path(dst)


def main(argv: list[str] | None = None) -> int:
    from face3d.testing import use_shared_ict

    if argv is None:
        argv = sys.argv[1:]
    if argv[:1] == ["--export"]:
        if len(argv) != 3:
            raise SystemExit("usage: python -m face3d.synth.train --export CHECKPOINT ASSET")
        print(export_weights(argv[1], argv[2]))
        return 0
    use_shared_ict()  # a development checkout: load_model('ict') reads the shared data's ICT-FaceKit
    train(parse_args(argv))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
