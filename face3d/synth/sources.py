"""Appearance sources for the synthetic face generator: albedo, backgrounds, occluders.

Each source is a small object with one sampling method taking a ``numpy.random.Generator``, so
the generator stays deterministic by seed and a later source (textures baked from real photos,
an albedo space) plugs in without touching the renderer code.

Albedo sources return either per-vertex colours (V, 3) or a UV texture (H, W, 3) in the
model's UV layout, floats in [0, 1]. Backgrounds return (S, S, 3) float32 in [0, 1].
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from face3d.errors import BadInputError
from face3d.fitting.synthetic import random_albedo
from face3d.models.model import MorphableModel

#: skimage sample images without people in them (backgrounds that ship with a dependency).
SKIMAGE_BACKGROUNDS = ("coffee.png", "chelsea.png", "rocket.jpg", "motorcycle_left.png", "motorcycle_right.png", "brick.png",
                       "grass.png", "gravel.png", "hubble_deep_field.jpg", "color.png", "coins.png", "horse.png", "page.png", "text.png")


class AlbedoSource(Protocol):
    def sample(self, model: MorphableModel, rng: np.random.Generator) -> np.ndarray | UVAlbedo:
        """Per-vertex (V, 3) or UV (H, W, 3) albedo in [0, 1], or a :class:`UVAlbedo` (both)."""
        ...


def _region(model: MorphableModel, name: str) -> np.ndarray:
    r = model.regions.get(name)
    return np.zeros(model.n_vertices, bool) if r is None else r.numpy()


_MASKS: weakref.WeakKeyDictionary[MorphableModel, tuple[np.ndarray, np.ndarray]] = weakref.WeakKeyDictionary()


def _lip_brow_masks(model: MorphableModel) -> tuple[np.ndarray, np.ndarray]:
    """Cached :func:`_compute_lip_brow_masks` of ``model``."""
    if model not in _MASKS:
        _MASKS[model] = _compute_lip_brow_masks(model)
    return _MASKS[model]


def _compute_lip_brow_masks(model: MorphableModel) -> tuple[np.ndarray, np.ndarray]:
    """(V,) bool masks of the lips (inside the outer lip contour 48-59 in x/y) and the brows
    (within 4 mm in x/y of the densified brow lines 17-21, 22-26), front-facing vertices only."""
    from skimage.measure import points_in_poly

    v = model.template.numpy()
    lm = model.landmarks(model.template[None], "ibug68")[0].numpy()
    front = _region(model, "face") if "face" in model.regions else np.ones(len(v), bool)
    front = front & (v[:, 2] > np.percentile(lm[:, 2], 5) - 0.01)
    lips = front & points_in_poly(v[:, :2], lm[48:60, :2]) & (np.abs(v[:, 2] - lm[48:60, 2].mean()) < 0.02)
    brows = np.zeros(len(v), bool)
    for a, b in ((17, 22), (22, 27)):
        line = lm[a:b]
        dense = np.concatenate([line[i] + (line[i + 1] - line[i]) * t[:, None] for i in range(len(line) - 1)
                                for t in [np.linspace(0, 1, 8)]])
        d = np.linalg.norm(v[:, None, :2] - dense[None, :, :2], axis=-1).min(1)
        brows |= front & (d < 0.004) & (v[:, 2] > lm[a:b, 2].min() - 0.015)
    return lips, brows


@dataclass(frozen=True)
class SmoothAlbedo:
    """Random skin tone (very light to very dark) with low-frequency variation
    (``fitting.synthetic.random_albedo``), plus region colours where the model names the regions
    (sclera, iris painted by angle, teeth, mouth interior, eye sockets), lips and brows placed
    from the model's 68 landmarks, and with probability ``hair_prob`` scalp hair (random
    hairline and colour)."""

    hair_prob: float = 0.7

    def sample(self, model: MorphableModel, rng: np.random.Generator) -> np.ndarray:
        alb = random_albedo(model, rng).astype(np.float32)
        # widen the tone range: very light to very dark skin
        alb = np.clip(alb * rng.uniform(0.45, 1.25), 0.02, 0.98)
        v = model.template.numpy()
        skin = alb[0].copy()
        iris_col = rng.uniform(0.05, 0.35) * np.array([1.0, rng.uniform(0.7, 1.1), rng.uniform(0.4, 1.0)])
        for name, col in (("sclera_left", [0.85, 0.83, 0.8]), ("sclera_right", [0.85, 0.83, 0.8]), ("teeth", [0.85, 0.82, 0.72]),
                          ("iris_left", iris_col), ("iris_right", iris_col), ("mouth_socket", [0.25, 0.08, 0.08]),
                          ("gums_and_tongue", [0.55, 0.2, 0.2]), ("eye_socket_left", skin * 0.4), ("eye_socket_right", skin * 0.4)):
            m = _region(model, name)
            alb[m] = np.asarray(col, np.float32) * rng.uniform(0.8, 1.1)
        for side in ("left", "right"):  # ICT's iris/sclera meshes are whole spheres: paint the iris by angle
            ball = _region(model, f"sclera_{side}") | _region(model, f"iris_{side}")
            if ball.any():
                d = v[ball] - v[ball].mean(0)
                cos = d[:, 2] / np.maximum(np.linalg.norm(d, axis=1), 1e-9)
                col = np.where((cos > 0.96)[:, None], 0.02, np.where((cos > rng.uniform(0.8, 0.86))[:, None], iris_col, alb[ball]))
                alb[ball] = col.astype(np.float32)
        face = _region(model, "face")
        if "ibug68" in model.embeddings:  # lips and brows placed from the model's own 68 landmarks
            lips, brows = _lip_brow_masks(model)
            alb[lips] = alb[lips] * (np.array([1.0, 0.62, 0.65]) * rng.uniform(0.7, 1.0)).astype(np.float32)
            alb[brows] = alb[brows] * rng.uniform(0.15, 0.7)
        if rng.random() < self.hair_prob:
            head = _region(model, "head_and_neck") | face
            top = v[:, 1].max()
            y_line = top - rng.uniform(0.04, 0.09)
            z_back = np.percentile(v[head, 2], rng.uniform(20, 45))
            hair = head & ((v[:, 1] > y_line) | ((v[:, 2] < z_back) & (v[:, 1] > y_line - rng.uniform(0.05, 0.15))))
            hc = rng.uniform(0.02, 0.5) * np.array([1.0, rng.uniform(0.7, 0.95), rng.uniform(0.5, 0.8)], np.float32)
            alb[hair] = hc * (1 + 0.15 * rng.normal(size=(int(hair.sum()), 1))).astype(np.float32)
        return np.clip(alb, 0.0, 1.0).astype(np.float32)


@dataclass(frozen=True)
class TextureFolderAlbedo:
    """UV textures (PNG/JPG in the model's UV layout, e.g. baked from real photos) from ``folder``,
    one at random per face, with a random tone gain. Needs a model with UVs."""

    folder: str

    def _files(self) -> list[Path]:
        files = sorted(p for p in Path(self.folder).glob("*") if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
        if not files:
            raise BadInputError(f"texture folder '{self.folder}' has no .png/.jpg textures")
        return files

    def sample(self, model: MorphableModel, rng: np.random.Generator) -> np.ndarray:
        from face3d.io.images import load_image

        if model.uvs is None:
            raise BadInputError(f"model '{model.name}' has no UVs: TextureFolderAlbedo needs them")
        files = self._files()
        tex = load_image(str(files[int(rng.integers(len(files)))])).astype(np.float32) / 255.0
        return np.clip(tex * rng.uniform(0.8, 1.15, 3).astype(np.float32), 0, 1)


@dataclass(frozen=True)
class ModelAlbedoSpace:
    """Albedo drawn from the model's own albedo space: coefficients ~ N(0, albedo_std² · scale²)."""

    scale: float = 1.0

    def sample(self, model: MorphableModel, rng: np.random.Generator) -> np.ndarray:
        if model.albedo_mean is None:
            raise BadInputError(f"model '{model.name}' has no albedo space")
        k = model.n_albedo
        c = None
        if k:
            c = torch.as_tensor(rng.normal(0, 1, (1, k)) * self.scale, dtype=torch.float32) * model.albedo_std
        with torch.no_grad():
            return model.albedo(c)[0].clamp(0, 1).numpy().astype(np.float32)


@dataclass(frozen=True)
class UVAlbedo:
    """Albedo in two parts: ``texture`` (R, R, 3) in the model's UV layout for the texture-owning
    triangles (:func:`face3d.fitting.stages.texture_face_mask`), ``vertex`` (V, 3) colours for the
    rest (eyeballs, mouth interior, scalp); both in [0, 1]."""

    texture: np.ndarray
    vertex: np.ndarray


class BakedTextures:
    """Textures baked from real photos (arrays (R, R, 3) in [0, 1], the model's UV layout), one
    at random per face with a random per-channel tone gain; the untextured parts come from
    :func:`face3d.fitting.synthetic.texture_vertex_albedo` (sclera, a random iris colour)."""

    def __init__(self, textures: list[np.ndarray], gain: tuple[float, float] = (0.8, 1.15)) -> None:
        if not textures:
            raise BadInputError("BakedTextures: no textures given")
        self.textures, self.gain = [np.asarray(t, np.float32) for t in textures], gain

    def sample(self, model: MorphableModel, rng: np.random.Generator) -> UVAlbedo:
        from face3d.fitting.synthetic import texture_vertex_albedo

        if model.uvs is None:
            raise BadInputError(f"model '{model.name}' has no UVs: BakedTextures needs them")
        tex = self.textures[int(rng.integers(len(self.textures)))]
        tex = np.clip(tex * rng.uniform(*self.gain, 3).astype(np.float32), 0, 1)
        return UVAlbedo(tex, np.clip(texture_vertex_albedo(model, tex, rng), 0, 1).astype(np.float32))


#: Region colour changes of :class:`RegionMixAlbedo`, per region: (hue ± degrees, saturation
#: range, value range). Skin spans very light to dark skin; lips from pale to red; brows from
#: faint to black; the eye area and the beard-shadow area darken or lighten a little.
REGION_COLOUR = {"skin": (6.0, (0.75, 1.3), (0.55, 1.3)), "lips": (12.0, (0.8, 1.6), (0.7, 1.15)),
                 "brows": (5.0, (0.6, 1.2), (0.35, 1.15)), "eyes": (5.0, (0.8, 1.2), (0.75, 1.1)),
                 "beard": (8.0, (0.6, 1.0), (0.6, 0.95))}
_YIQ = np.array([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])


def hsv_matrix(hue_deg: float, saturation: float, value: float) -> np.ndarray:
    """A (3, 3) linear RGB colour change: hue rotated by ``hue_deg`` about the grey axis, chroma
    scaled by ``saturation``, everything by ``value`` (a linear stand-in for HSV edits, in YIQ;
    the identity at (0, 1, 1)). Apply as ``rgb @ M.T``."""
    a = np.deg2rad(hue_deg)
    rot = np.array([[1.0, 0.0, 0.0], [0.0, np.cos(a), -np.sin(a)], [0.0, np.sin(a), np.cos(a)]]) * np.array([1.0, saturation, saturation])[:, None]
    return (value * np.linalg.inv(_YIQ) @ rot @ _YIQ).astype(np.float32)


def _near_lines(v: np.ndarray, points: np.ndarray, radius: float) -> np.ndarray:
    """(V,) bool: vertices within ``radius`` (x/y, metres) of the closed polyline ``points`` (L, 3)."""
    closed = np.concatenate([points, points[:1]])
    dense = np.concatenate([closed[i] + (closed[i + 1] - closed[i]) * np.linspace(0, 1, 8)[:, None] for i in range(len(points))])
    return np.linalg.norm(v[:, None, :2] - dense[None, :, :2], axis=-1).min(1) < radius


def face_region_masks(model: MorphableModel) -> dict[str, np.ndarray]:
    """(V,) bool vertex masks of the regions :class:`RegionMixAlbedo` swaps, placed from the model's
    68 landmarks on its template (front-facing 'face' vertices only): 'lips' and 'brows'
    (:func:`_lip_brow_masks`), 'eyes' (within 10 mm in x/y of the eye contours 36-47, lids and
    under-eye included) and 'beard' (below the nose base, inside the jaw line 3-13, lips excluded)."""
    from skimage.measure import points_in_poly

    if "ibug68" not in model.embeddings:
        raise BadInputError(f"model '{model.name}' has no 'ibug68' landmarks: face regions need them")
    v = model.template.numpy()
    lm = model.landmarks(model.template[None], "ibug68")[0].numpy()
    front = (_region(model, "face") if "face" in model.regions else np.ones(len(v), bool)) & (v[:, 2] > np.percentile(lm[:, 2], 5) - 0.01)
    lips, brows = _lip_brow_masks(model)
    eyes = np.zeros(len(v), bool)
    for a in (36, 42):
        eyes |= front & _near_lines(v, lm[a:a + 6], 0.010) & (v[:, 2] > lm[a:a + 6, 2].min() - 0.015)
    jaw = np.concatenate([lm[3:14, :2], [[lm[13, 0], lm[33, 1]], [lm[3, 0], lm[33, 1]]]])
    beard = front & points_in_poly(v[:, :2], jaw) & (v[:, 1] < lm[33, 1]) & ~lips
    return {"beard": beard, "eyes": eyes & ~brows, "brows": brows, "lips": lips}  # painted in this order: lips last


@dataclass(frozen=True)
class UVRegionMaps:
    """What :class:`RegionMixAlbedo` needs of a model at one texture resolution R: ``masks`` name ->
    (R, R, 1) float32 soft region mask in [0, 1] (UV space); ``mirror`` (R*R,) the flat texel index
    of each texel's left-right mirror (the texel itself where the mirror is unknown)."""

    masks: dict[str, np.ndarray]
    mirror: np.ndarray


_UV_MAPS: weakref.WeakKeyDictionary[MorphableModel, dict[int, UVRegionMaps]] = weakref.WeakKeyDictionary()


def uv_region_maps(model: MorphableModel, resolution: int, soften: float = 3.0 / 256) -> UVRegionMaps:
    """:class:`UVRegionMaps` of ``model`` (cached per model and resolution): the vertex masks of
    :func:`face_region_masks` interpolated over the texture-owning triangles
    (:func:`face3d.fitting.stages.texture_face_mask`), dilated past chart borders and blurred with
    a Gaussian of ``soften`` × R texels; the mirror from :func:`face3d.texture.symmetry.symmetry_map`."""
    from scipy.ndimage import gaussian_filter

    from face3d.fitting.stages import texture_face_mask
    from face3d.texture.symmetry import symmetry_map
    from face3d.texture.uv_raster import rasterize_uv

    if model.uvs is None or model.uv_faces is None:
        raise BadInputError(f"model '{model.name}' has no UVs: region mixing needs them")
    R = int(resolution)
    per_model = _UV_MAPS.setdefault(model, {})
    if R in per_model:
        return per_model[R]
    raster = rasterize_uv(model.uvs, model.uv_faces, R, face_mask=torch.as_tensor(texture_face_mask(model)))
    masks = {}
    for name, m in face_region_masks(model).items():
        uv = raster.dilate(raster.scatter(raster.interpolate(torch.as_tensor(m, dtype=torch.float32)[:, None], model.faces)))
        masks[name] = np.clip(gaussian_filter(uv.numpy()[..., 0], soften * R), 0, 1)[..., None].astype(np.float32)
    sym = symmetry_map(model.template, model.faces, model.uvs, model.uv_faces, raster)
    mirror = np.arange(R * R)
    uv = sym.uv.numpy()
    col = np.clip(np.floor(uv[:, 0] * R).astype(np.int64), 0, R - 1)
    row = np.clip(np.floor((1.0 - uv[:, 1]) * R).astype(np.int64), 0, R - 1)
    ok = sym.valid.numpy()
    mirror[raster.index.numpy()[ok]] = (row * R + col)[ok]
    per_model[R] = UVRegionMaps(masks, mirror)
    return per_model[R]


class RegionMixAlbedo:
    """Textures composed per face from several baked photo textures (arrays (R, R, 3) in [0, 1],
    the model's UV layout): the skin base from one, each of lips, brows, eye area and
    beard-shadow area (:func:`face_region_masks`, soft masks in UV) with probability ``swap_prob``
    from another, tone-matched to the base (per-channel median ratio); every texture used is
    mirrored left-right with probability ``mirror_prob``; then random colour changes
    (:func:`hsv_matrix`, ranges :data:`REGION_COLOUR`): one for the whole skin, and one more per
    region on top (the beard-shadow one with probability ``beard_prob``), and a per-channel skin
    gain in ``gain``. The untextured parts come from
    :func:`face3d.fitting.synthetic.texture_vertex_albedo` as in :class:`BakedTextures`."""

    def __init__(self, textures: list[np.ndarray], swap_prob: float = 0.6, mirror_prob: float = 0.5, beard_prob: float = 0.3,
                 colour: dict[str, tuple[float, tuple[float, float], tuple[float, float]]] | None = None,
                 gain: tuple[float, float] = (0.93, 1.07)) -> None:
        if not textures:
            raise BadInputError("RegionMixAlbedo: no textures given")
        self.textures = [np.asarray(t, np.float32) for t in textures]
        shapes = sorted({t.shape for t in self.textures})
        if len(shapes) != 1 or len(shapes[0]) != 3 or shapes[0][2] != 3 or shapes[0][0] != shapes[0][1]:
            raise BadInputError(f"RegionMixAlbedo: textures must share one (R, R, 3) shape, got {shapes}")
        self.colour = dict(REGION_COLOUR if colour is None else colour)
        if set(self.colour) != set(REGION_COLOUR):
            raise BadInputError(f"RegionMixAlbedo: colour ranges needed for exactly {sorted(REGION_COLOUR)}, got {sorted(self.colour)}")
        self.medians = [np.maximum(np.median(t.reshape(-1, 3), 0), 1e-3) for t in self.textures]
        self.swap_prob, self.mirror_prob, self.beard_prob, self.gain = swap_prob, mirror_prob, beard_prob, gain

    def _pick(self, rng: np.random.Generator, maps: UVRegionMaps) -> tuple[np.ndarray, np.ndarray]:
        k = int(rng.integers(len(self.textures)))
        tex = self.textures[k]
        if rng.random() < self.mirror_prob:
            tex = tex.reshape(-1, 3)[maps.mirror].reshape(tex.shape)
        return tex, self.medians[k]

    def _colour(self, rng: np.random.Generator, name: str) -> np.ndarray:
        hue, sat, val = self.colour[name]
        return hsv_matrix(rng.uniform(-hue, hue), rng.uniform(*sat), rng.uniform(*val))

    def sample(self, model: MorphableModel, rng: np.random.Generator) -> UVAlbedo:
        from face3d.fitting.synthetic import texture_vertex_albedo

        maps = uv_region_maps(model, self.textures[0].shape[0])
        base, base_med = self._pick(rng, maps)
        skin = self._colour(rng, "skin") * rng.uniform(*self.gain, 3).astype(np.float32)[:, None]
        out = base @ skin.T
        for name, mask in maps.masks.items():
            swap, recolour = rng.random() < self.swap_prob, name != "beard" or rng.random() < self.beard_prob
            if not (swap or recolour):
                continue
            src = base
            if swap:
                donor, med = self._pick(rng, maps)
                src = donor * (base_med / med).astype(np.float32)
            change = self._colour(rng, name) if recolour else np.eye(3, dtype=np.float32)
            out = out * (1 - mask) + (src @ (change @ skin).T) * mask
        tex = np.clip(out, 0, 1).astype(np.float32)
        return UVAlbedo(tex, np.clip(texture_vertex_albedo(model, tex, rng), 0, 1).astype(np.float32))


class MixedAlbedo:
    """One of ``sources`` per face, drawn with probabilities proportional to ``weights``."""

    def __init__(self, sources: list[AlbedoSource], weights: list[float]) -> None:
        w = np.asarray(weights, np.float64)
        if len(sources) == 0 or len(sources) != len(w) or (w < 0).any() or w.sum() <= 0:
            raise BadInputError(f"MixedAlbedo: need one non-negative weight per source (got {len(sources)} sources, weights {list(w)})")
        self.sources, self.p = list(sources), w / w.sum()

    def sample(self, model: MorphableModel, rng: np.random.Generator) -> np.ndarray | UVAlbedo:
        return self.sources[int(rng.choice(len(self.sources), p=self.p))].sample(model, rng)


# ---------------------------------------------------------------------------- backgrounds
def procedural_background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A random (size, size, 3) background: gradient + smooth noise + optional stripes, in [0, 1]."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    c0, c1 = rng.uniform(0, 1, 3), rng.uniform(0, 1, 3)
    a = rng.uniform(0, 2 * np.pi)
    t = (np.cos(a) * xx + np.sin(a) * yy)[..., None]
    img = c0 * (1 - t) + c1 * t
    g = max(2, int(rng.integers(2, 12)))
    coarse = rng.normal(0, rng.uniform(0.02, 0.25), (g, g, 3)).astype(np.float32)
    from scipy.ndimage import zoom

    img = img + zoom(coarse, (size / g, size / g, 1), order=1)[:size, :size]
    if rng.random() < 0.3:
        f = rng.uniform(5, 40)
        img = img + rng.uniform(0.05, 0.3) * np.sin(2 * np.pi * f * (np.cos(a + 1) * xx + np.sin(a + 1) * yy))[..., None]
    return np.clip(img, 0, 1).astype(np.float32)


class PhotoBackgrounds:
    """Random square crops (random scale, flip) of the photos in ``folder`` (or the given paths),
    resized to the requested size. Photos are read once and kept in memory (long side <= 512).
    Faces in the photos are not cut out: pass folders without faces."""

    def __init__(self, folder: str | None = None, paths: list[str] | None = None) -> None:
        files = list(paths or [])
        if folder is not None:
            files += sorted(str(p) for p in Path(folder).glob("*") if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
        if not files:
            raise BadInputError(f"no background photos found (folder={folder!r})")
        from PIL import Image

        self.images: list[np.ndarray] = []
        for f in files:
            im = Image.open(f).convert("RGB")
            im.thumbnail((512, 512))
            self.images.append(np.asarray(im))

    @classmethod
    def skimage_samples(cls) -> PhotoBackgrounds:
        """Backgrounds from the sample photos that ship with scikit-image (no people)."""
        import skimage.data

        root = Path(skimage.data.__file__).parent
        return cls(paths=[str(root / n) for n in SKIMAGE_BACKGROUNDS if (root / n).is_file()])

    def sample(self, rng: np.random.Generator, size: int) -> np.ndarray:
        from PIL import Image

        im = self.images[int(rng.integers(len(self.images)))]
        h, w = im.shape[:2]
        side = int(min(h, w) * rng.uniform(0.3, 1.0))
        y0, x0 = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
        crop = Image.fromarray(im[y0:y0 + side, x0:x0 + side]).resize((size, size), Image.BILINEAR)
        out = np.asarray(crop, np.float32) / 255.0
        return out[:, ::-1].copy() if rng.random() < 0.5 else out


class MixedBackgrounds:
    """Photo crops with probability ``photo_prob`` (when photos are given), else procedural."""

    def __init__(self, photos: PhotoBackgrounds | None = None, photo_prob: float = 0.6) -> None:
        self.photos, self.photo_prob = photos, photo_prob

    def sample(self, rng: np.random.Generator, size: int) -> np.ndarray:
        if self.photos is not None and rng.random() < self.photo_prob:
            return self.photos.sample(rng, size)
        return procedural_background(rng, size)


# ---------------------------------------------------------------------------- occluders
def add_occluders(image: np.ndarray, rng: np.random.Generator, max_count: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Paint 0..max_count occluders over ``image`` (S, S, 3) float: skin/hand-coloured or random
    ellipses, and dark thin strands (hair) or frame-like bars. Returns (image, mask (S, S) bool)."""
    S = image.shape[0]
    yy, xx = np.mgrid[0:S, 0:S].astype(np.float32)
    out, mask = image.copy(), np.zeros((S, S), bool)
    for _ in range(int(rng.integers(0, max_count + 1))):
        kind = rng.random()
        cx, cy = rng.uniform(0.1, 0.9) * S, rng.uniform(0.1, 0.9) * S
        if kind < 0.6:  # blob (hand-coloured 60 %)
            ax, ay = rng.uniform(0.06, 0.25) * S, rng.uniform(0.06, 0.25) * S
            a = rng.uniform(0, np.pi)
            dx, dy = xx - cx, yy - cy
            u = (np.cos(a) * dx + np.sin(a) * dy) / ax
            v = (-np.sin(a) * dx + np.cos(a) * dy) / ay
            m = u * u + v * v < 1
            col = (np.array([0.75, 0.55, 0.45]) * rng.uniform(0.35, 1.15)) if rng.random() < 0.6 else rng.uniform(0, 1, 3)
            shade = (1 - 0.3 * np.clip(u, -1, 1))[..., None]
            out = np.where(m[..., None], np.clip(col * shade, 0, 1), out)
        else:  # strand or bar: a thick line segment
            a = rng.uniform(0, np.pi)
            L = rng.uniform(0.2, 0.8) * S
            wdt = rng.uniform(0.005, 0.03) * S
            dx, dy = xx - cx, yy - cy
            along = np.cos(a) * dx + np.sin(a) * dy
            across = -np.sin(a) * dx + np.cos(a) * dy + 0.002 * S * np.sin(along / S * rng.uniform(5, 20))
            m = (np.abs(along) < L / 2) & (np.abs(across) < wdt)
            col = rng.uniform(0, 0.35, 3) if rng.random() < 0.7 else rng.uniform(0, 1, 3)
            out = np.where(m[..., None], col, out)
        mask |= m
    return out.astype(np.float32), mask
