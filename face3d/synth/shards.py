"""Shards: N synthetic samples in one ``.npz``, deterministic by (seed, index).

Sample ``i`` of a shard with seed ``s`` is drawn from ``numpy.random.default_rng([s, i])``, so a
shard is reproducible and any sample can be regenerated alone. Arrays (N = samples):
images (N, S, S, 3) uint8; landmarks68 (N, 68, 2) float32 crop px; visible68 (N, 68) bool
(self-occlusion); occluded68 (N, 68) bool (under a painted occluder);
landmarks478 (N, 478, 2) (only when the model has the set); shape (N, K_id); expression
(N, K_exp); pose (N, 3); euler_deg (N, 3); translation (N, 3); K (N, 3, 3); focal_mm (N,);
header_json (model name, seed, config).

CLI: ``python -m face3d.synth.shards --out DIR --shards 4 --n 256 --seed 0 [--backgrounds DIR] [--albedo mixed|mix2]``
writes DIR/shard_<seed>_<k>.npz for k in 0..shards-1 (seed of shard k: seed * 100000 + k).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from face3d.errors import BadInputError
from face3d.synth.generator import FaceSynthesizer, SynthSample

if TYPE_CHECKING:
    from face3d.models.model import MorphableModel
    from face3d.synth.sources import AlbedoSource

FIELDS = ("landmarks68", "visible68", "occluded68", "shape", "expression", "pose", "euler_deg", "translation", "K", "focal_mm")


def sample_rng(seed: int, index: int) -> np.random.Generator:
    """The generator of sample ``index`` of a shard with ``seed``."""
    return np.random.default_rng([int(seed), int(index)])


def stack_samples(samples: list[SynthSample]) -> dict[str, np.ndarray]:
    """Stack samples into the shard arrays (see module docstring)."""
    if not samples:
        raise BadInputError("a shard needs at least one sample")
    out = {"images": np.stack([s.image for s in samples])}
    for f in FIELDS:
        out[f] = np.stack([np.asarray(getattr(s, f)) for s in samples])
    if all(s.landmarks478 is not None for s in samples):
        out["landmarks478"] = np.stack([s.landmarks478 for s in samples])  # type: ignore[misc]
    return out


def write_shard(path: str | Path, synth: FaceSynthesizer, n: int, seed: int) -> Path:
    """Render ``n`` samples with seeds (seed, 0..n-1) and write them atomically to ``path`` (.npz)."""
    from face3d.io.atomic import atomic_path

    if n < 1:
        raise BadInputError(f"write_shard: n must be >= 1, got {n}")
    arrays = stack_samples([synth.sample(sample_rng(seed, i)) for i in range(n)])
    header = {"format": "face3d-synth-shard", "version": 1, "model": synth.model.name, "seed": int(seed), "n": int(n),
              "config": dataclasses.asdict(synth.config)}
    arrays["header_json"] = np.array(json.dumps(header))
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)
    return Path(path)


def read_shard(path: str | Path) -> dict[str, np.ndarray]:
    """Arrays of a shard written by :func:`write_shard` (FileFormatError on a wrong file)."""
    from face3d.errors import FileFormatError
    from face3d.io.npz import read_npz

    data = read_npz(Path(path), "synthetic shard", error=FileFormatError)
    for k in ("images", "landmarks68", "header_json"):
        if k not in data:
            raise FileFormatError(path, f"not a synthetic shard (missing '{k}')")
    return data


#: Albedo mix of ``--albedo mixed``: (smooth random skin, the model's albedo space, textures baked
#: from the albedo space's training photos).
MIXED_ALBEDO_WEIGHTS = (0.3, 0.2, 0.5)
#: Albedo mix of ``--albedo mix2``: (smooth random skin, the model's albedo space, textures composed
#: per region from the same training photos, :class:`face3d.synth.sources.RegionMixAlbedo`).
MIX2_ALBEDO_WEIGHTS = (0.2, 0.1, 0.7)
ALBEDO_CHOICES = ("smooth", "space", "mixed", "mix2")


def make_albedo(kind: str, model: MorphableModel) -> AlbedoSource:
    """The albedo source named ``kind``: 'smooth' (:class:`SmoothAlbedo`), 'space' (the model's
    albedo space), 'mixed' (all three of :data:`MIXED_ALBEDO_WEIGHTS`, the baked textures being
    the albedo space's *training* photos, ``face3d.synth.calibrate.training_textures``: never a
    benchmark test photo, never AFLW2000) or 'mix2' (:data:`MIX2_ALBEDO_WEIGHTS`: the same, with
    the baked textures composed per region, mirrored and recoloured, :class:`RegionMixAlbedo`)."""
    from face3d.synth.sources import (
        BakedTextures,
        MixedAlbedo,
        ModelAlbedoSpace,
        RegionMixAlbedo,
        SmoothAlbedo,
    )

    if kind == "smooth":
        return SmoothAlbedo()
    if kind == "space":
        return ModelAlbedoSpace()
    if kind in ("mixed", "mix2"):
        from face3d.synth.calibrate import training_textures

        textures = training_textures()
        baked = BakedTextures(textures) if kind == "mixed" else RegionMixAlbedo(textures)
        sources: list[AlbedoSource] = [SmoothAlbedo(), ModelAlbedoSpace(), baked]
        weights = list(MIXED_ALBEDO_WEIGHTS if kind == "mixed" else MIX2_ALBEDO_WEIGHTS)
        if model.albedo_mean is None:
            weights[1] = 0.0
        return MixedAlbedo(sources, weights)
    raise BadInputError(f"unknown albedo source '{kind}' (expected one of {', '.join(ALBEDO_CHOICES)})")


def make_synthesizer(model: str = "ict", backgrounds: str | None = None, crop_size: int = 128, albedo: str = "smooth") -> FaceSynthesizer:
    """A synthesizer for a registry model name or path, with photo backgrounds from ``backgrounds``
    (a folder; 'skimage' for scikit-image's sample photos; None: procedural only) and the albedo
    source ``albedo`` (:func:`make_albedo`)."""
    import face3d
    from face3d.synth.generator import SynthConfig
    from face3d.synth.sources import MixedBackgrounds, PhotoBackgrounds

    photos = None
    if backgrounds == "skimage":
        photos = PhotoBackgrounds.skimage_samples()
    elif backgrounds:
        photos = PhotoBackgrounds(backgrounds)
    m = face3d.load_model(model)
    return FaceSynthesizer(m, SynthConfig(crop_size=crop_size), albedo=make_albedo(albedo, m), backgrounds=MixedBackgrounds(photos))


def main(argv: list[str] | None = None) -> int:
    from face3d.testing import use_shared_ict

    use_shared_ict()  # a development checkout: load_model('ict') reads the shared data's ICT-FaceKit
    ap = argparse.ArgumentParser(prog="python -m face3d.synth.shards", description="write synthetic face shards")
    ap.add_argument("--out", required=True)
    ap.add_argument("--shards", type=int, default=1)
    ap.add_argument("--n", type=int, default=256)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--model", default="ict")
    ap.add_argument("--backgrounds", default="skimage", help="folder of photos without faces, 'skimage', or '' for procedural")
    ap.add_argument("--crop-size", type=int, default=128)
    ap.add_argument("--albedo", default="smooth", choices=ALBEDO_CHOICES)
    ap.add_argument("--yaw-deg", default=None, metavar="LO,HI",
                    help="head yaw range in degrees (default the generator's, -90,90); training mirrors faces at random, "
                    "so 55,90 gives profiles of both sides")
    args = ap.parse_args(argv)
    synth = make_synthesizer(args.model, args.backgrounds or None, args.crop_size, args.albedo)
    if args.yaw_deg:
        try:
            lo, hi = (float(v) for v in args.yaw_deg.split(","))
        except ValueError:
            raise BadInputError(f"--yaw-deg must look like '55,90', got {args.yaw_deg!r}") from None
        synth.config = dataclasses.replace(synth.config, yaw_deg=(lo, hi))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for k in range(args.shards):
        s = args.seed * 100000 + k
        path = out / f"shard_{s:08d}.npz"
        if path.exists():
            continue
        t, c = time.perf_counter(), time.process_time()
        write_shard(path, synth, args.n, s)
        dt, dc = time.perf_counter() - t, time.process_time() - c
        print(f"{path} {args.n} samples in {dt:.1f} s wall ({args.n / dt:.2f} samples/s), {dc:.1f} s CPU ({args.n / dc:.2f} samples/s per busy core)",
              flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
