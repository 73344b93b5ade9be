"""A PCA albedo space in ICT-FaceKit's UV layout, built from real photos.

Build (``python -m face3d.texture.albedo_space --out assets/albedo/ict_albedo_space.npz``):

1. Each training photo of :data:`SPLIT_FILE` is fitted with ICT (``face3d.reconstruct``,
   model 'ict', the default fit) and baked into ICT's UV layout at :data:`BUILD_RESOLUTION`²
   (:func:`face3d.texture.bake_texture`: visibility-weighted unwrap, de-lit by the fitted SH
   lighting, completed by the mirror texel). Only what the photo (or the mirror) saw counts:
   the bake's per-texel ``weight`` in [0, 1] is the validity mask.
2. Brightness: the albedo/lighting scale is ambiguous (a darker face in brighter light looks
   the same), so each bake is rescaled to keep the photo's own brightness: albedo × the median
   irradiance over the well-seen texels. Skin tone therefore means "as exposed in the photo".
3. Residual shading (:func:`remove_residual_shading`): what the SH fit left of the lighting
   (a per-photo 9-term SH ratio to the population mean, on the template normals) is divided out,
   so the modes hold albedo, not light.
4. Weighted EM-PCA (:func:`build_pca`): unseen texels start at the mean and are refilled from
   the current K-mode reconstruction until the modes converge; deterministic (SVD, no random
   start). ``albedo = mean + Σ_k c_k basis_k`` with unit-norm basis rows and ``c_k ~ N(0, std_k²)``.
5. Stored (float16, :func:`save_albedo_space`) as UV maps at :data:`STORE_RESOLUTION`² and per
   vertex in ICT's *full* vertex order (26,719): face-submesh vertices sample the UV maps at
   their UV; other vertices (neck, scalp, eyeballs, mouth) take the average over the face of the
   mean and of each mode (tone shifts reach them, detail does not).

Attach it to a model with :func:`attach_albedo_space` (the fitter then explains the image with
the space instead of a smooth tone field, see ``face3d.fitting.stages``).
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import numpy as np
import torch
import torch.nn.functional as F

from face3d.errors import BadInputError, ModelFileError, NoFaceError, ShapeError

if TYPE_CHECKING:
    from face3d.models.model import MorphableModel
    from face3d.texture.uv_raster import UVRaster

#: Bake resolution (texels per side) of the training textures.
BUILD_RESOLUTION = 256
#: Resolution of the stored UV maps.
STORE_RESOLUTION = 128
#: Bake weight below which a texel counts as not seen in that photo.
MIN_WEIGHT = 0.05
#: Number of PCA modes stored.
N_MODES = 20
#: EM-PCA refill iterations.
EM_ITERATIONS = 30
#: Seed recorded with the build (the fit's seed; the PCA itself has no random step).
SEED = 0
#: Photos whose largest face has an outer-eye-corner distance below this (pixels) are skipped.
MIN_EYE_DISTANCE_PX = 40.0
#: Photos left out by hand (heavy occlusion), name -> reason.
EXCLUDED: dict[str, str] = {"insightface_mask2.jpg": "a face mask covers the lower face",
                            "insightface_tom_hanks_112.jpg": "greyscale photo (no skin colour)"}
#: The train/held-out split (photo names only), relative to the assets folder.
SPLIT_FILE = "albedo/split.json"
#: The shipped space, relative to the assets folder.
ASSET_FILE = "albedo/ict_albedo_space.npz"
#: ICT full-model vertex count (the per-vertex arrays' order).
ICT_FULL_VERTICES = 26719


def assets_path(rel: str) -> Path:
    from face3d.paths import assets_dir

    return assets_dir() / rel


# --------------------------------------------------------------------------- photos and split
def candidate_photos(shared: Path) -> list[Path]:
    """Photos of ``shared``/faces and ``shared``/faces_more usable for the albedo space: every
    *.jpg except the AFLW2000 evaluation photos (``aflw2000_*``), sorted by name."""
    out = []
    for sub in ("faces", "faces_more"):
        out += [p for p in sorted((shared / sub).glob("*.jpg")) if not p.name.startswith("aflw2000")]
    return out


def identity_key(name: str) -> str:
    """Photos of one person share a key: the name without extension and a trailing ``_<digit>``
    (``openface_clapton_1.jpg`` and ``openface_clapton_2.jpg`` -> ``openface_clapton``)."""
    stem = name.rsplit(".", 1)[0]
    return re.sub(r"_\d$", "", stem)


def benchmark_held_out(shared: Path) -> set[str]:
    """The benchmark's held-out test-texture photos (``benchmarks/reconstruct.py``
    ``test_texture_photos``): every ``faces_more/*.jpg`` whose index in the sorted list is ≡ 2
    (mod 3), and every ``faces/d3dfr_*.jpg`` whose index among those is ≡ 2 (mod 3)."""
    more = sorted(p.name for p in (shared / "faces_more").glob("*.jpg"))
    d3dfr = sorted(p.name for p in (shared / "faces").glob("d3dfr_*.jpg"))
    return {n for i, n in enumerate(more) if i % 3 == 2} | {n for i, n in enumerate(d3dfr) if i % 3 == 2}


def make_split(names: Sequence[str], held_out: set[str]) -> dict[str, list[str]]:
    """{'train', 'test'} sorted name lists: ``held_out`` photos (the benchmark's test textures)
    and every other photo of the same person (:func:`identity_key`) are test, the rest train."""
    people = {identity_key(n) for n in names if n in held_out}
    test = sorted(n for n in names if n in held_out or identity_key(n) in people)
    return {"train": sorted(n for n in names if n not in set(test)), "test": test}


def read_split(path: Path | None = None) -> dict[str, Any]:
    """The committed split (keys 'train', 'test', 'skipped', ...); ModelFileError if unreadable."""
    path = path or assets_path(SPLIT_FILE)
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise ModelFileError(path, f"cannot read the albedo split: {exc}") from None
    if not isinstance(data.get("train"), list) or not isinstance(data.get("test"), list):
        raise ModelFileError(path, "expected lists 'train' and 'test'")
    return data


# --------------------------------------------------------------------------- colour
def srgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """sRGB (..., 3) in [0, 1] -> CIELAB (..., 3) (D65)."""
    from skimage.color import rgb2lab

    return rgb2lab(np.clip(rgb, 0, 1).reshape(-1, 1, 3)).reshape(rgb.shape)


def ita_degrees(rgb: np.ndarray, weight: np.ndarray | None = None) -> float:
    """Individual typology angle ITA = atan((L* − 50) / b*) in degrees (−90..90) of the weighted
    mean CIELAB colour of ``rgb`` (N, 3) (> 55 very light, 41–55 light, 28–41 intermediate, 10–28
    tan, −30–10 brown, < −30 dark; Chardon et al. 1991); b* is floored at 1 (grey or blue-cast
    photos: ±90 by the lightness alone)."""
    lab = srgb_to_lab(np.asarray(rgb, np.float64).reshape(-1, 3))
    w = np.ones(len(lab)) if weight is None else np.asarray(weight, np.float64).reshape(-1)
    L, _, b = (lab * w[:, None]).sum(0) / max(w.sum(), 1e-12)
    return float(np.degrees(np.arctan((L - 50.0) / max(b, 1.0))))


ITA_CLASSES = ((55.0, "very light"), (41.0, "light"), (28.0, "intermediate"), (10.0, "tan"), (-30.0, "brown"), (-1e9, "dark"))


def ita_class(ita: float) -> str:
    """The ITA skin-tone class name of an angle in degrees."""
    return next(name for lo, name in ITA_CLASSES if ita > lo)


# --------------------------------------------------------------------------- layout
@dataclass(frozen=True)
class UVLayout:
    """The face tile of a model's UV layout at ``resolution``: ``texels`` (N,) flat indices of
    the covered texels, ``raster`` the :class:`~face3d.texture.UVRaster`."""

    resolution: int
    texels: np.ndarray
    raster: UVRaster


def face_layout(model: MorphableModel, resolution: int) -> UVLayout:
    """Covered texels of the model's face tile (``texture_face_mask`` triangles) at ``resolution``."""
    from face3d.fitting.stages import texture_face_mask
    from face3d.texture.uv_raster import rasterize_uv

    if model.uvs is None or model.uv_faces is None:
        raise BadInputError(f"model '{model.name}' has no UV layout")
    r = rasterize_uv(model.uvs, model.uv_faces, resolution, torch.as_tensor(texture_face_mask(model)))
    return UVLayout(resolution, r.index.numpy().astype(np.int64), r)


def template_normals(model: MorphableModel, layout: UVLayout) -> np.ndarray:
    """Unit normals (T, 3) of the model's neutral template at ``layout``'s covered texels."""
    from face3d.fitting.stages import texture_face_mask
    from face3d.texture.maps import uv_position_normal_maps

    g = uv_position_normal_maps(model.template, model.faces, model.uvs, model.uv_faces, layout.resolution,
                                torch.as_tensor(texture_face_mask(model)))
    return g.normal.reshape(-1, 3)[torch.as_tensor(layout.texels)].numpy()


# --------------------------------------------------------------------------- baking
@dataclass(frozen=True)
class BakedPhoto:
    """One photo in the UV layout: ``albedo`` (R, R, 3) de-lit in [0, 1] (brightness kept, see the
    module docstring), ``weight`` (R, R) in [0, 1] how well each texel was seen (0: unseen),
    ``ita`` (degrees) and ``eye_distance_px`` of the fitted face."""

    name: str
    albedo: np.ndarray
    weight: np.ndarray
    ita: float
    eye_distance_px: float


def bake_photo(path: str | Path, model: MorphableModel | None = None, resolution: int = BUILD_RESOLUTION) -> BakedPhoto:
    """Fit ``model`` (default: ICT parts='face' *without* an albedo space, so the build does not
    depend on its own output) to the largest face of a photo and bake it (see module docstring).
    Raises NoFaceError when no face is found."""
    import face3d
    from face3d.fitting.stages import texture_face_mask
    from face3d.mesh import FaceMesh, View
    from face3d.models import load_model
    from face3d.texture.bake import bake_texture

    if model is None:
        model = load_model("ict", parts="face", albedo_space=False)
    rec = face3d.reconstruct(str(path), model=model, texture=False, detail=False)
    m = rec.model
    img = rec.image.astype(np.float32) / 255
    posed = torch.as_tensor(rec.vertices(posed=True), dtype=torch.float32)
    view = View(img, rec.camera(), torch.as_tensor(rec.sh, dtype=torch.float32))
    tex = bake_texture(FaceMesh.from_model(m, posed), view, resolution=resolution, template=m.template,
                       face_mask=torch.as_tensor(texture_face_mask(m)))
    w = tex.weight.numpy().astype(np.float32)
    assert tex.shading is not None  # baked with the default BakeOptions
    shade = tex.shading.numpy().mean(-1)
    good = (tex.visibility.numpy() > 0.5) & (shade > 0)
    scale = float(np.median(shade[good])) if good.sum() > 100 else 1.0
    albedo = np.clip(tex.albedo.numpy() * scale, 0, 1).astype(np.float32)
    lm = rec.landmarks2d("ibug68")
    eye = float(np.linalg.norm(lm[36] - lm[45]))
    return BakedPhoto(Path(path).name, albedo, w, texture_ita(albedo, w), eye)


def texture_ita(albedo: np.ndarray, weight: np.ndarray) -> float:
    """ITA (degrees, :func:`ita_degrees`) of the well-seen (weight > 0.5) texels of a baked
    texture (R, R, 3); NaN when none was seen."""
    seen = weight > 0.5
    return ita_degrees(albedo[seen], weight[seen]) if seen.any() else float("nan")


# --------------------------------------------------------------------------- PCA
@dataclass(frozen=True)
class AlbedoSpace:
    """A linear albedo space over the covered texels of a UV layout.

    mean (D,), basis (K, D) unit-norm rows, std (K,): ``albedo = mean + c @ basis`` with
    ``c_k ~ N(0, std_k²)``; D = 3 · len(texels), texel-major (RGB of texel 0, texel 1, ...).
    ``resolution`` and ``texels`` (flat indices into the R×R map) place D in the UV map."""

    mean: np.ndarray
    basis: np.ndarray
    std: np.ndarray
    resolution: int
    texels: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def n_modes(self) -> int:
        return int(self.basis.shape[0])

    def uv_maps(self, fill: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
        """(mean (R, R, 3), basis (K, R, R, 3)) images, ``fill`` outside the covered texels."""
        R = self.resolution
        mean = np.full((R * R, 3), fill, np.float32)
        mean[self.texels] = self.mean.reshape(-1, 3)
        basis = np.zeros((self.n_modes, R * R, 3), np.float32)
        basis[:, self.texels] = self.basis.reshape(self.n_modes, len(self.texels), 3)
        return mean.reshape(R, R, 3), basis.reshape(self.n_modes, R, R, 3)


def build_pca(data: np.ndarray, weights: np.ndarray, n_modes: int = N_MODES, iterations: int = EM_ITERATIONS,
              min_weight: float = MIN_WEIGHT) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Weighted EM-PCA. data (N, T, 3) colours; weights (N, T) in [0, 1] (0: unseen). Texels with
    weight < ``min_weight`` are missing. Start: missing texels take the weighted mean; each
    iteration refits the mean and the top ``n_modes`` modes to the current data and refills a
    texel with ``w·observed + (1 − w)·reconstruction``. Returns (mean (D,), basis (K, D) unit
    rows, std (K,)) with D = 3T; deterministic (sign of each mode fixed: largest entry > 0)."""
    data = np.asarray(data, np.float64)
    if data.ndim != 3 or data.shape[2] != 3:
        raise ShapeError("data", "(N, T, 3)", data.shape)
    N, T, _ = data.shape
    w = np.where(np.asarray(weights, np.float64) >= min_weight, np.asarray(weights, np.float64), 0.0)
    if w.shape != (N, T):
        raise ShapeError("weights", f"({N}, {T})", w.shape)
    K = min(n_modes, N - 1)
    if K < 1:
        raise BadInputError(f"build_pca: need at least 2 textures, got {N}")
    W = np.repeat(w, 3, axis=1)  # (N, D)
    X = data.reshape(N, -1)
    mean = (W * X).sum(0) / np.maximum(W.sum(0), 1e-8)
    fill = np.where(W > 0, X, mean[None])
    filled = W * fill + (1 - W) * mean[None]
    for _ in range(iterations):
        mean = filled.mean(0)
        basis, _ = _top_modes(filled - mean[None], K)
        recon = mean[None] + ((filled - mean[None]) @ basis.T) @ basis
        filled = W * X + (1 - W) * recon
    mean = filled.mean(0)
    basis, S = _top_modes(filled - mean[None], K)
    sign = np.sign(basis[np.arange(K), np.abs(basis).argmax(1)])
    basis = basis * sign[:, None]
    std = S / math.sqrt(max(N - 1, 1))
    return mean.astype(np.float32), basis.astype(np.float32), std.astype(np.float32)


def _top_modes(xc: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` principal directions (k, D) unit rows and singular values (k,) of centred rows
    xc (N, D), from the N×N Gram matrix (N ≪ D: ~100× faster than an SVD of xc)."""
    w, v = np.linalg.eigh(xc @ xc.T)
    order = np.argsort(w)[::-1][:k]
    s = np.sqrt(np.maximum(w[order], 1e-20))
    return (v[:, order].T @ xc) / s[:, None], s


def project(space_mean: np.ndarray, basis: np.ndarray, std: np.ndarray, target: np.ndarray, weight: np.ndarray,
            n_modes: int | None = None, reg: float = 1e-3) -> np.ndarray:
    """Weighted least-squares fit of ``target`` (D,) with the first ``n_modes`` modes (Gaussian
    prior ``reg · Σ (c/std)²``): returns the reconstruction (D,). ``weight`` (D,) or (D/3,)."""
    k = basis.shape[0] if n_modes is None else int(n_modes)
    B = np.asarray(basis[:k], np.float64)
    w = np.asarray(weight, np.float64).reshape(-1)
    if w.shape[0] * 3 == B.shape[1]:
        w = np.repeat(w, 3)
    r = np.asarray(target, np.float64) - space_mean
    A = (B * w[None]) @ B.T + reg * np.diag(1.0 / np.maximum(np.asarray(std[:k], np.float64), 1e-8) ** 2)
    c = np.linalg.solve(A, (B * w[None]) @ r) if k else np.zeros(0)
    return space_mean + c @ B


def masked_rms(a: np.ndarray, b: np.ndarray, weight: np.ndarray) -> float:
    """Weighted RMS colour difference of (D,) vectors (weight (D,) or (D/3,))."""
    w = np.asarray(weight, np.float64).reshape(-1)
    if w.shape[0] * 3 == np.asarray(a).size:
        w = np.repeat(w, 3)
    return float(np.sqrt((w * (np.asarray(a, np.float64) - b) ** 2).sum() / max(w.sum(), 1e-12)))


def resample_space(space: AlbedoSpace, src: UVLayout, dst: UVLayout) -> AlbedoSpace:
    """The space moved from layout ``src`` (its own) to ``dst`` (another resolution of the same UV
    layout): uncovered texels first take their nearest covered texel, then area-average down
    or bilinear up."""
    if not np.array_equal(src.texels, space.texels):
        raise BadInputError("resample_space: 'src' is not the space's layout")
    mean, basis = space.uv_maps()
    maps = np.concatenate([mean[None], basis], 0)  # (1+K, R, R, 3)
    t = torch.as_tensor(maps).reshape(maps.shape[0], -1, 3)[:, src.raster.nearest]
    t = t.reshape(maps.shape).permute(0, 3, 1, 2)
    size = (dst.resolution, dst.resolution)
    out = F.interpolate(t, size=size, mode="area") if dst.resolution < space.resolution else \
        F.interpolate(t, size=size, mode="bilinear", align_corners=False)
    out = out.permute(0, 2, 3, 1).reshape(maps.shape[0], -1, 3)[:, torch.as_tensor(dst.texels)].numpy()
    return AlbedoSpace(out[0].reshape(-1), out[1:].reshape(space.n_modes, -1), space.std, dst.resolution, dst.texels, dict(space.meta))


# --------------------------------------------------------------------------- per vertex
def per_vertex(space: AlbedoSpace, model: MorphableModel) -> tuple[np.ndarray, np.ndarray]:
    """(mean (V, 3), basis (K, V, 3)) of ``space`` at the vertices of ``model`` (sharing its UV
    layout): vertices of the face tile (``texture_face_mask`` triangles) sample the UV maps at
    their UV (bilinear, from a map dilated past the chart borders); all other vertices take the
    average of the mean and of each mode over the face tile."""
    from face3d.fitting.stages import texture_face_mask
    from face3d.texture.symmetry import vertex_uv_index
    from face3d.texture.uv_raster import rasterize_uv, uv_to_grid

    faces = model.faces.numpy()
    fm = texture_face_mask(model)
    lay = face_layout(model, space.resolution)
    if not np.array_equal(lay.texels, space.texels):
        raise BadInputError(f"albedo space: its UV texels do not match model '{model.name}''s face tile at {space.resolution}²")
    raster = rasterize_uv(model.uvs, model.uv_faces, space.resolution, torch.as_tensor(fm))
    mean, basis = space.uv_maps()
    maps = torch.as_tensor(np.concatenate([mean[None], basis], 0)).reshape(space.n_modes + 1, -1, 3)
    maps = maps[:, raster.nearest].reshape(space.n_modes + 1, space.resolution, space.resolution, 3).permute(0, 3, 1, 2)
    V = model.n_vertices
    uv_idx = vertex_uv_index(faces[fm], model.uv_faces.numpy()[fm], model.uvs.numpy())
    in_face = np.zeros(V, bool)
    in_face[np.unique(faces[fm])] = True
    uv_idx = np.concatenate([uv_idx, np.full(max(0, V - len(uv_idx)), -1)])[:V]
    in_face &= uv_idx >= 0
    uv = torch.as_tensor(model.uvs.numpy()[uv_idx[in_face]], dtype=torch.float32)
    grid = uv_to_grid(uv)[None, None].expand(space.n_modes + 1, 1, -1, 2)
    got = F.grid_sample(maps, grid, mode="bilinear", padding_mode="border", align_corners=False)[:, :, 0].permute(0, 2, 1).numpy()
    avg = np.concatenate([space.mean.reshape(1, -1, 3), space.basis.reshape(space.n_modes, len(space.texels), 3)], 0).mean(1)  # (1+K, 3)
    out = np.repeat(avg[:, None], V, 1).astype(np.float32)
    out[:, in_face] = got
    return out[0], out[1:]


# --------------------------------------------------------------------------- file
def save_albedo_space(space: AlbedoSpace, path: str | Path, vertex_mean: np.ndarray, vertex_basis: np.ndarray) -> Path:
    """Write the space (float16 UV maps and per-vertex arrays, JSON metadata), atomically."""
    from face3d.io.atomic import atomic_path

    mean_uv, basis_uv = space.uv_maps()
    arrays = {
        "uv_mean": mean_uv.astype(np.float16), "uv_basis": basis_uv.astype(np.float16), "uv_texels": space.texels.astype(np.int32),
        "albedo_mean": vertex_mean.astype(np.float16), "albedo_basis": vertex_basis.astype(np.float16),
        "albedo_std": space.std.astype(np.float32), "meta_json": np.array(json.dumps(space.meta)),
    }
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, **arrays)
    return Path(path)


@dataclass(frozen=True)
class AlbedoSpaceFile:
    """A loaded albedo-space file: ``space`` (UV, :class:`AlbedoSpace`), per-vertex
    ``albedo_mean`` (V, 3), ``albedo_basis`` (K, V, 3), ``albedo_std`` (K,) float32 in ICT's
    full vertex order, ``meta`` (photos, seed, settings)."""

    space: AlbedoSpace
    albedo_mean: np.ndarray
    albedo_basis: np.ndarray
    albedo_std: np.ndarray
    meta: dict[str, Any]


def load_albedo_space(path: str | Path | None = None) -> AlbedoSpaceFile:
    """Read a file written by :func:`save_albedo_space` (default: the shipped ICT space)."""
    from face3d.io.npz import read_npz

    path = Path(path) if path is not None else assets_path(ASSET_FILE)
    d = read_npz(path, "albedo space file")
    need = ("uv_mean", "uv_basis", "uv_texels", "albedo_mean", "albedo_basis", "albedo_std", "meta_json")
    missing = [k for k in need if k not in d]
    if missing:
        raise ModelFileError(path, f"not an albedo space file: missing {missing}")
    meta = json.loads(str(d["meta_json"]))
    tex = d["uv_texels"].astype(np.int64)
    K, R = d["uv_basis"].shape[0], d["uv_mean"].shape[0]
    if d["albedo_basis"].shape[0] != K or d["albedo_std"].shape != (K,) or d["albedo_basis"].shape[1:] != d["albedo_mean"].shape:
        raise ModelFileError(path, f"inconsistent shapes: basis {d['albedo_basis'].shape}, mean {d['albedo_mean'].shape}, std {d['albedo_std'].shape}")
    space = AlbedoSpace(d["uv_mean"].astype(np.float32).reshape(-1, 3)[tex].reshape(-1),
                        d["uv_basis"].astype(np.float32).reshape(K, -1, 3)[:, tex].reshape(K, -1),
                        d["albedo_std"].astype(np.float32), int(R), tex, meta)
    return AlbedoSpaceFile(space, d["albedo_mean"].astype(np.float32), d["albedo_basis"].astype(np.float32),
                           d["albedo_std"].astype(np.float32), meta)


def ict_vertex_ids(model: MorphableModel) -> np.ndarray:
    """ICT full-model vertex ids (V,) of an ICT model's vertices: identity for parts='full',
    the kept submeshes in order for parts='face' (``face3d.models.ict.FACE_PARTS``)."""
    from face3d.models.ict import FACE_PARTS, ICT_SUBMESHES

    parts = model.meta.get("parts", "full")
    if parts == "full" and model.n_vertices == ICT_FULL_VERTICES:
        return np.arange(ICT_FULL_VERTICES)
    if parts == "face":
        ids = np.concatenate([np.arange(*vr) for name, vr, _ in ICT_SUBMESHES if name in FACE_PARTS])
        if len(ids) == model.n_vertices:
            return ids
    raise BadInputError(f"model '{model.name}' ({model.n_vertices} vertices, parts={parts!r}) is not an ICT vertex order; pass vertex_ids")


def attach_albedo_space(model: MorphableModel, path: str | Path | None = None, vertex_ids: np.ndarray | None = None,
                        n_modes: int | None = None) -> MorphableModel:
    """A copy of ``model`` carrying the per-vertex albedo space of ``path`` (default: the shipped
    ICT space). ``vertex_ids`` (V,) ICT full-model vertex id of each of the model's vertices
    (default: :func:`ict_vertex_ids` for ICT models); ``n_modes`` keeps the first modes only."""
    import copy

    f = load_albedo_space(path)
    ids = ict_vertex_ids(model) if vertex_ids is None else np.asarray(vertex_ids, np.int64)
    if ids.shape != (model.n_vertices,):
        raise ShapeError("vertex_ids", f"({model.n_vertices},)", ids.shape)
    Vf = f.albedo_mean.shape[0]
    if ids.size and (ids.min() < 0 or ids.max() >= Vf):
        raise BadInputError(f"vertex_ids must lie in [0, {Vf}) (the albedo space's vertex count)")
    k = f.albedo_basis.shape[0] if n_modes is None else int(n_modes)
    out = copy.deepcopy(model)
    dev = model.template.device
    out.albedo_mean = torch.as_tensor(f.albedo_mean[ids], device=dev)
    out.albedo_basis = torch.as_tensor(f.albedo_basis[:k, ids], device=dev)
    out.albedo_std = torch.as_tensor(f.albedo_std[:k], device=dev)
    out.meta = {**out.meta, "albedo_space": {"file": str(path or ASSET_FILE), "modes": k,
                                              "photos": len(f.meta.get("photos", [])), "build": f.meta.get("build", {})}}
    return out


def write_default_albedo(f: AlbedoSpaceFile, path: str | Path) -> Path:
    """Write ``f``'s per-vertex space in the embedded ``default`` model's vertex order (keys of
    :mod:`face3d.models.default`: albedo_mean, albedo_basis float16, albedo_std float32),
    atomically: default vertex j takes ICT vertex i where ``ict_to_default_ids(i) == j``."""
    from face3d.io.atomic import atomic_path
    from face3d.models.default import N_VERTICES, ict_to_default_ids

    d = ict_to_default_ids(np.arange(f.albedo_mean.shape[0]))
    src = np.full(N_VERTICES, -1, np.int64)
    src[d[d >= 0]] = np.nonzero(d >= 0)[0]
    if (src < 0).any():
        raise BadInputError("write_default_albedo: some default-model vertices have no ICT vertex")
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, albedo_mean=f.albedo_mean[src].astype(np.float16), albedo_basis=f.albedo_basis[:, src].astype(np.float16),
                                albedo_std=f.albedo_std.astype(np.float32), meta_json=np.array(json.dumps(f.meta)))
    return Path(path)


# --------------------------------------------------------------------------- build
def bake_all(paths: Sequence[Path], cache: Path | None, resolution: int = BUILD_RESOLUTION, log: TextIO | None = None) -> tuple[list[BakedPhoto], dict[str, str]]:
    """Bake each photo (cached as npz in ``cache`` when given). Returns (baked, skipped name ->
    reason): no face, or a face smaller than :data:`MIN_EYE_DISTANCE_PX`."""
    from face3d.errors import Face3DError

    baked, skipped = [], {}
    for i, p in enumerate(paths):
        f = cache / f"{p.stem}-{resolution}.npz" if cache else None
        t0 = time.perf_counter()
        if f is not None and f.is_file():
            d = np.load(f)
            b = BakedPhoto(p.name, d["albedo"], d["weight"], texture_ita(d["albedo"], d["weight"]), float(d["eye"]))
        else:
            try:
                b = bake_photo(p, resolution=resolution)
            except (NoFaceError, Face3DError) as exc:
                skipped[p.name] = f"{type(exc).__name__}: {str(exc).split(': ', 1)[-1]}"
                continue
            if f is not None:
                f.parent.mkdir(parents=True, exist_ok=True)
                np.savez(f, albedo=b.albedo, weight=b.weight, ita=b.ita, eye=b.eye_distance_px)
        if b.eye_distance_px < MIN_EYE_DISTANCE_PX:
            skipped[p.name] = f"face too small (eye distance {b.eye_distance_px:.0f} px)"
            continue
        baked.append(b)
        if log:
            print(f"[{i + 1}/{len(paths)}] {p.name}: ITA {b.ita:.1f}°, eye distance {b.eye_distance_px:.0f} px, "
                  f"{time.perf_counter() - t0:.1f} s", file=log, flush=True)
    return baked, skipped


def remove_residual_shading(data: np.ndarray, weights: np.ndarray, normals: np.ndarray) -> np.ndarray:
    """Divide out what each bake keeps of the lighting: per photo, the luminance ratio to the
    weighted population mean over its seen texels (weight > 0.5) is fitted with the 9-term
    Lambertian SH basis of the template normals (T, 3), normalised to median 1 and divided out
    (clipped to [0.3, 3]; the result clipped to [0, 1]: dividing a downward-facing texel such as
    the inner lip by a low shade gave albedos up to 2.9). data (N, T, 3), weights (N, T) -> (N, T, 3). Without it the first
    modes learn lighting, and a fit that relies on shading (preset 'shape') loses its shape cue."""
    from face3d import renderers

    data = np.asarray(data, np.float64).copy()
    w = np.asarray(weights, np.float64)
    basis = renderers.shading.sh_basis(torch.as_tensor(np.asarray(normals), dtype=torch.float32)).double().numpy()  # (T, 9)
    mean = (data * w[..., None]).sum(0) / np.maximum(w.sum(0), 1e-8)[:, None]
    lum = np.array([0.299, 0.587, 0.114])
    ref = np.maximum(mean @ lum, 1e-3)
    for n in range(data.shape[0]):
        ww = np.where(w[n] > 0.5, w[n], 0.0)
        if (ww > 0).sum() < 20:
            continue
        sq = np.sqrt(ww)
        c = np.linalg.lstsq(basis * sq[:, None], (data[n] @ lum) / ref * sq, rcond=None)[0]
        shade = basis @ c
        shade = shade / np.median(shade[ww > 0])
        data[n] = np.clip(data[n] / np.clip(shade, 0.3, 3.0)[:, None], 0.0, 1.0)  # a reflectance: never above 1
    return data


def build_space(baked: Sequence[BakedPhoto], layout: UVLayout, n_modes: int = N_MODES, normals: np.ndarray | None = None) -> AlbedoSpace:
    """The EM-PCA space of baked photos on ``layout``'s covered texels; with ``normals`` (T, 3)
    (the template's, per covered texel) each bake's residual shading is removed first
    (:func:`remove_residual_shading`)."""
    data = np.stack([b.albedo.reshape(-1, 3)[layout.texels] for b in baked])
    w = np.stack([b.weight.reshape(-1)[layout.texels] for b in baked])
    if normals is not None:
        data = remove_residual_shading(data, w, normals)
    mean, basis, std = build_pca(data, w, n_modes, min_weight=MIN_WEIGHT)
    seen = (w >= MIN_WEIGHT).any(0)
    mean, basis = fill_unseen(mean.reshape(-1), basis, seen, layout)
    return AlbedoSpace(mean, basis, std, layout.resolution, layout.texels)


def fill_unseen(mean: np.ndarray, basis: np.ndarray, seen: np.ndarray, layout: UVLayout) -> tuple[np.ndarray, np.ndarray]:
    """Texels that no photo saw (``seen`` (T,) False) take the mean (D,) and modes (K, D) of their
    nearest seen texel in the UV map; EM-PCA has no data there and would leave them at 0 albedo."""
    if seen.all() or not seen.any():
        return mean, basis
    from scipy.spatial import cKDTree

    rc = np.stack(np.divmod(layout.texels, layout.resolution), 1).astype(np.float64)  # (T, 2) row, column
    src = np.flatnonzero(seen)
    dst = np.flatnonzero(~seen)
    near = src[cKDTree(rc[src]).query(rc[dst])[1]]
    m, b = mean.reshape(-1, 3).copy(), basis.reshape(basis.shape[0], -1, 3).copy()
    m[dst], b[:, dst] = m[near], b[:, near]
    return m.reshape(-1), b.reshape(basis.shape[0], -1)


def evaluate_held_out(f: AlbedoSpaceFile, baked: Sequence[BakedPhoto], modes: Sequence[int] = (5, 10, 20)) -> np.ndarray:
    """Masked RMS colour error (len(baked), 1 + len(modes)) of each held-out bake (texels with
    weight > 0.5) against the mean alone, then against its projection on the first k modes."""
    s = f.space
    rows = []
    for b in baked:
        a = torch.as_tensor(b.albedo).permute(2, 0, 1)[None]
        w = torch.as_tensor(b.weight)[None, None]
        k = b.albedo.shape[0] // s.resolution
        if k > 1:  # to the stored resolution: weighted area average
            a = F.avg_pool2d(a * w, k) / F.avg_pool2d(w, k).clamp_min(1e-6)
            w = F.avg_pool2d(w, k)
        tex = a[0].permute(1, 2, 0).reshape(-1, 3).numpy()[s.texels].reshape(-1)
        ww = w.reshape(-1).numpy()[s.texels]
        ww = np.where(ww > 0.5, ww, 0.0)
        rows.append([masked_rms(s.mean, tex, ww)] + [masked_rms(project(s.mean, s.basis, s.std, tex, ww, n_modes=m), tex, ww) for m in modes])
    return np.asarray(rows)


def main(argv: list[str] | None = None) -> int:
    from face3d.testing import use_shared_ict

    use_shared_ict()  # a development checkout: load_model('ict') reads the shared data's ICT-FaceKit
    ap = argparse.ArgumentParser(description="Build ICT's albedo space from the shared photos (see the module docstring).")
    ap.add_argument("--out", type=Path, default=None, help=f"output npz (default assets/{ASSET_FILE})")
    ap.add_argument("--split", type=Path, default=None, help=f"split json (default assets/{SPLIT_FILE})")
    ap.add_argument("--make-split", action="store_true", help="bake every candidate photo and (re)write the split file first")
    ap.add_argument("--cache", type=Path, default=None, help="cache folder for the baked photos (default <face3d cache>/albedo_bakes)")
    ap.add_argument("--modes", type=int, default=N_MODES)
    ap.add_argument("--default-out", type=Path, default=None,
                    help="also write the space for the embedded default model here (e.g. assets/default/albedo_space.npz)")
    ap.add_argument("--evaluate", action="store_true", help="only print the held-out reproduction table of the --out file")
    a = ap.parse_args(argv)
    from face3d.models import load_model
    from face3d.paths import cache_dir
    from face3d.testing import shared_data

    torch.manual_seed(SEED)
    shared = shared_data()
    cache = a.cache or cache_dir() / "albedo_bakes"
    split_path = a.split or assets_path(SPLIT_FILE)
    t0 = time.perf_counter()
    if a.make_split:
        baked, skipped = bake_all([p for p in candidate_photos(shared) if p.name not in EXCLUDED], cache, log=sys.stderr)
        split = make_split([b.name for b in baked], benchmark_held_out(shared))
        split["skipped"] = skipped
        split["excluded"] = EXCLUDED
        split["ita"] = {b.name: round(b.ita, 1) for b in baked}
        split["rule"] = ("candidates: shared faces/ and faces_more/ *.jpg without aflw2000_*; held out: the benchmark's test "
                         "textures (faces_more index = 2 mod 3, faces/d3dfr_* index = 2 mod 3, benchmarks/reconstruct.py) "
                         "and every other photo of the same people")
        split_path.parent.mkdir(parents=True, exist_ok=True)
        split_path.write_text(json.dumps(split, indent=1) + "\n")
    split = read_split(split_path)
    folders = {p.name: p for p in candidate_photos(shared)}
    if a.evaluate:
        test, _ = bake_all([folders[n] for n in split["test"]], cache)
        r = evaluate_held_out(load_albedo_space(a.out), test)
        print(f"Held-out baked textures (n={len(r)}), masked RMS colour error (texels seen with weight > 0.5), median over photos:")
        print("| mean only | 5 modes | 10 modes | 20 modes | 10 modes better than the mean | worst 10-mode / mean ratio |")
        print("|---|---|---|---|---|---|")
        med = np.median(r, 0)
        print(f"| {med[0]:.4f} | {med[1]:.4f} | {med[2]:.4f} | {med[3]:.4f} | {int((r[:, 2] < r[:, 0]).sum())}/{len(r)} | "
              f"{float((r[:, 2] / r[:, 0]).max()):.2f} |")
        return 0
    missing = [n for n in split["train"] if n not in folders]
    if missing:
        raise BadInputError(f"albedo split: training photos not found in {shared}: {missing}")
    baked, skipped = bake_all([folders[n] for n in split["train"]], cache, log=sys.stderr)
    if skipped:
        raise BadInputError(f"albedo build: training photos failed to bake: {skipped}")
    full = load_model("ict", parts="full")
    layout = face_layout(full, BUILD_RESOLUTION)
    space = build_space(baked, layout, a.modes, normals=template_normals(full, layout))
    store = resample_space(space, layout, face_layout(full, STORE_RESOLUTION)) if STORE_RESOLUTION != BUILD_RESOLUTION else space
    vm, vb = per_vertex(store, full)
    itas = [b.ita for b in baked]
    meta = {"photos": [b.name for b in baked], "ita": {b.name: round(b.ita, 1) for b in baked},
            "build": {"seed": SEED, "modes": space.n_modes, "build_resolution": BUILD_RESOLUTION, "store_resolution": STORE_RESOLUTION,
                      "em_iterations": EM_ITERATIONS, "residual_shading": "removed (9-term SH of the template normals, per photo)", "model": "ict (ICT-FaceKit, MIT)", "vertex_order": "ICT full (26719)",
                      "fit": "face3d.reconstruct(model='ict') default fit", "seconds": round(time.perf_counter() - t0, 1)},
            "explained_variance": (space.std ** 2).round(6).tolist(),
            "ita_classes": {c: int(sum(ita_class(x) == c for x in itas)) for _, c in ITA_CLASSES}}
    store = AlbedoSpace(store.mean, store.basis, store.std, store.resolution, store.texels, meta)
    out = a.out or assets_path(ASSET_FILE)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_albedo_space(store, out, vm, vb)
    if a.default_out is not None:  # the same space in the embedded default model's vertex order
        write_default_albedo(load_albedo_space(out), a.default_out)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB): {len(baked)} photos, {space.n_modes} modes, "
          f"{time.perf_counter() - t0:.0f} s; ITA classes {meta['ita_classes']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
