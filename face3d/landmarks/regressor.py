"""A small landmark regressor: a MobileNetV2-style CNN on a square face crop.

Input: (B, 3, S, S) float crops (S = ``input_size``, default 128), normalised by
:func:`normalise_images` from uint8 RGB. Output: :class:`RegressorOutput` with
``points`` (B, 68, 2) in normalised crop coordinates ([-1, 1] across the crop, x right, y down)
and ``log_var`` (B, 68), the log of each point's isotropic variance in the same units. The 68
points are the 300W-LP / AFLW2000-3D 3D convention (jaw points are fixed mesh points, visible or
not). Training minimises the Gaussian negative log-likelihood (Wood et al. 2022,
"3D Face Reconstruction with Dense Landmarks"): ``0.5 · |d|² / σ² + log σ²`` per point.

:class:`LandmarkRegressor` wraps a trained network for images: ``predict(image, box)``
-> :class:`RegressorResult` in image pixels.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from face3d.errors import BadInputError, ModelFileError, ShapeError

N_POINTS = 68
#: iBUG-68 left-right mirror permutation: point i of a mirrored face is point FLIP68[i] of the original.
FLIP68 = np.array(
    list(range(16, -1, -1)) + list(range(26, 16, -1)) + [27, 28, 29, 30] + [35, 34, 33, 32, 31]
    + [45, 44, 43, 42, 47, 46, 39, 38, 37, 36, 41, 40]
    + [54, 53, 52, 51, 50, 49, 48, 59, 58, 57, 56, 55] + [64, 63, 62, 61, 60, 67, 66, 65]
)
MEAN, STD = 0.5, 0.25


@dataclass(frozen=True)
class RegressorConfig:
    """Network size: ``width`` multiplies MobileNetV2's channels; ``input_size`` crop px."""

    width: float = 0.75
    input_size: int = 128


@dataclass(frozen=True)
class RegressorOutput:
    """points (B, 68, 2) normalised crop coords in [-1, 1]; log_var (B, 68) log σ² in those units²."""

    points: Tensor
    log_var: Tensor


@dataclass(frozen=True)
class RegressorResult:
    """One face: landmarks (68, 2) image px (x right, y down); sigma (68,) px, the predicted
    standard deviation of each point; box (x0, y0, side) the square crop it was read from."""

    landmarks: np.ndarray
    sigma: np.ndarray
    box: tuple[float, float, float]


def _ch(c: float, width: float) -> int:
    return max(8, int(round(c * width / 8)) * 8)


class _Inverted(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, expand: int) -> None:
        super().__init__()
        hid = cin * expand
        layers: list[nn.Module] = []
        if expand != 1:
            layers += [nn.Conv2d(cin, hid, 1, bias=False), nn.BatchNorm2d(hid), nn.ReLU6(inplace=True)]
        layers += [nn.Conv2d(hid, hid, 3, stride, 1, groups=hid, bias=False), nn.BatchNorm2d(hid), nn.ReLU6(inplace=True),
                   nn.Conv2d(hid, cout, 1, bias=False), nn.BatchNorm2d(cout)]
        self.block = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: Tensor) -> Tensor:
        y = self.block(x)
        return x + y if self.residual else y


class LandmarkNet(nn.Module):
    """MobileNetV2 body (stride 32) + a flattening head to 68 × (x, y, log σ²)."""

    SETTINGS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))

    def __init__(self, config: RegressorConfig | None = None) -> None:
        super().__init__()
        self.config = cfg = config or RegressorConfig()
        if cfg.input_size % 32 or cfg.input_size < 64:
            raise BadInputError(f"RegressorConfig.input_size must be a multiple of 32 and >= 64, got {cfg.input_size}")
        c = _ch(32, cfg.width)
        layers: list[nn.Module] = [nn.Conv2d(3, c, 3, 2, 1, bias=False), nn.BatchNorm2d(c), nn.ReLU6(inplace=True)]
        for t, co, n, s in self.SETTINGS:
            co = _ch(co, cfg.width)
            for i in range(n):
                layers.append(_Inverted(c, co, s if i == 0 else 1, t))
                c = co
        layers += [nn.Conv2d(c, 128, 1, bias=False), nn.BatchNorm2d(128), nn.ReLU6(inplace=True)]
        self.body = nn.Sequential(*layers)
        g = cfg.input_size // 32
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(128 * g * g, 256), nn.ReLU(inplace=True), nn.Linear(256, N_POINTS * 3))
        with torch.no_grad():
            self.head[-1].weight.mul_(0.1)
            self.head[-1].bias.zero_()

    def forward(self, x: Tensor) -> RegressorOutput:
        """x (B, 3, S, S) normalised crops -> :class:`RegressorOutput`."""
        S = self.config.input_size
        if x.ndim != 4 or x.shape[1:] != (3, S, S):
            raise ShapeError("x", f"(B, 3, {S}, {S})", tuple(x.shape))
        out = self.head(self.body(x)).view(-1, N_POINTS, 3)
        return RegressorOutput(points=out[..., :2], log_var=out[..., 2].clamp(-14.0, 4.0))


def gaussian_nll(out: RegressorOutput, target: Tensor) -> Tensor:
    """Mean Gaussian NLL (isotropic 2D, per point, constant dropped) of ``target`` (B, 68, 2)
    under ``out``: ``0.5 · exp(−s) · |d|² + s`` with s = log σ²."""
    d2 = ((out.points - target) ** 2).sum(-1)
    return (0.5 * torch.exp(-out.log_var) * d2 + out.log_var).mean()


def normalise_images(images: np.ndarray | Tensor) -> Tensor:
    """uint8 (B, S, S, 3) RGB -> float (B, 3, S, S) network input."""
    x = images if isinstance(images, Tensor) else torch.from_numpy(np.array(images, copy=True))
    if x.ndim != 4 or x.shape[-1] != 3:
        raise ShapeError("images", "(B, S, S, 3) uint8", tuple(x.shape))
    return (x.permute(0, 3, 1, 2).float() / 255.0 - MEAN) / STD


def to_normalised(points_px: np.ndarray | Tensor, size: int) -> Tensor:
    """Crop pixels (..., 2) -> [-1, 1] coordinates (pixel edges at ±1)."""
    return torch.as_tensor(points_px, dtype=torch.float32) / size * 2 - 1


def to_pixels(points: Tensor | np.ndarray, size: int) -> np.ndarray:
    """[-1, 1] coordinates (..., 2) -> crop pixels."""
    return (np.asarray(points, np.float64) + 1) / 2 * size


def square_box(points_or_box: np.ndarray, scale: float = 1.375) -> tuple[float, float, float]:
    """(x0, y0, side) of the square crop around a face: ``points`` (N, 2+) px or a box
    (x0, y0, x1, y1); side = longest side × ``scale``, same centre."""
    a = np.asarray(points_or_box, np.float64)
    if a.ndim == 2:
        lo, hi = a[:, :2].min(0), a[:, :2].max(0)
    elif a.shape == (4,):
        lo, hi = a[:2], a[2:]
    else:
        raise ShapeError("points_or_box", "(N, 2) points or (4,) box", a.shape)
    side = float((hi - lo).max() * scale)
    if side <= 0:
        raise BadInputError("square_box: empty face box")
    c = (lo + hi) / 2
    return float(c[0] - side / 2), float(c[1] - side / 2), side


def crop_image(image: np.ndarray, box: tuple[float, float, float], size: int) -> np.ndarray:
    """The square ``box`` (x0, y0, side) px of ``image`` (H, W, 3) uint8 resampled to (size, size, 3)
    (bilinear, with area pre-filtering when shrinking; outside the image: black)."""
    from PIL import Image

    x0, y0, side = box
    im = Image.fromarray(np.ascontiguousarray(image))
    factor = side / size
    if factor > 2:  # pre-shrink so bilinear does not alias
        k = int(factor // 1.5)
        im = im.reduce(k)
        x0, y0, side = x0 / k, y0 / k, side / k
    out = im.transform((size, size), Image.EXTENT, (x0, y0, x0 + side, y0 + side), Image.BILINEAR)
    return np.asarray(out, np.uint8)


def mirror_average(points: np.ndarray, var: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two readings of the same faces, points (2, B, 68, 2) and variances (2, B, 68) (index 0 direct,
    1 mirrored and mapped back), averaged per point weighted by inverse variance: (points (B, 68, 2),
    sigma (B, 68)) of the combined estimate."""
    w0, w1 = 1 / var[0], 1 / var[1]
    return (points[0] * w0[..., None] + points[1] * w1[..., None]) / (w0 + w1)[..., None], np.sqrt(1 / (w0 + w1))


class LandmarkRegressor:
    """A trained :class:`LandmarkNet` for images. ``LandmarkRegressor.load(path)`` reads a
    checkpoint written by ``face3d.synth.train`` (``weights.pt`` or ``last.pt``)."""

    def __init__(self, net: LandmarkNet, box_scale: float = 1.375) -> None:
        self.net = net.eval()
        self.box_scale = box_scale

    @classmethod
    def load(cls, path: str | Path) -> "LandmarkRegressor":
        path = Path(path)
        if not path.is_file():
            raise ModelFileError(path, "file not found")
        try:
            ck = torch.load(path, map_location="cpu", weights_only=True)
            net = LandmarkNet(RegressorConfig(**ck["config"]))
            net.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in ck["model"].items()})  # float16 assets
        except (KeyError, RuntimeError, TypeError, ValueError) as exc:
            raise ModelFileError(path, f"not a landmark regressor checkpoint ({exc})") from None
        return cls(net, float(ck.get("box_scale", 1.375)))

    @property
    def input_size(self) -> int:
        return self.net.config.input_size

    def predict_crops(self, crops: np.ndarray, mirror: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """crops (B, S, S, 3) uint8 -> (points (B, 68, 2) crop px, sigma (B, 68) crop px).

        ``mirror``: also read the left-right mirrored crops and average the two answers per point,
        weighted by inverse variance (sigma of the average: that of the combined estimate)."""
        if not mirror:
            pts, var = self._forward(normalise_images(crops))
            return pts, np.sqrt(var)
        return mirror_average(*self._both(crops))

    def predict_both(self, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """crops (B, S, S, 3) uint8 read as they are and mirrored left-right, the mirrored reading
        mapped back (points renumbered by :data:`FLIP68`, x reflected): (points (2, B, 68, 2) crop
        px, sigma (2, B, 68) crop px), index 0 the direct reading, 1 the mirrored one."""
        pts, var = self._both(crops)
        return pts, np.sqrt(var)

    def _both(self, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`predict_both` with variances (crop px²) instead of sigmas."""
        x = normalise_images(crops)
        pts, var = self._forward(torch.cat([x, x.flip(-1)]))
        B, S = len(crops), self.input_size
        mp, mv = pts[B:][:, FLIP68], var[B:][:, FLIP68]
        mp[..., 0] = S - mp[..., 0]
        return np.stack([pts[:B], mp]), np.stack([var[:B], mv])

    def _forward(self, x: Tensor) -> tuple[np.ndarray, np.ndarray]:
        """Normalised crops (B, 3, S, S) -> (points (B, 68, 2) crop px, variance (B, 68) crop px²)."""
        with torch.inference_mode():
            out = self.net(x)
        S = self.input_size
        return to_pixels(out.points, S), np.exp(out.log_var.double().numpy()) * (S / 2) ** 2

    def predict(self, image: np.ndarray, face: np.ndarray, refine: int = 1, mirror: bool = True) -> RegressorResult:
        """Landmarks of the face in ``image`` (H, W, 3) uint8; ``face`` is its box (x0, y0, x1, y1)
        or points (N, 2) px around it (cropped square with side × ``box_scale``). ``refine``: read
        the face again that many times from the crop around the previous answer (the training
        crops sit around the 68 points); ``mirror``: average with the mirrored crop
        (:meth:`predict_crops`)."""
        img = np.asarray(image)
        if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
            raise ShapeError("image", "(H, W, 3) uint8", (img.shape, str(img.dtype)))
        box = square_box(face, self.box_scale)
        for i in range(refine + 1):
            if i and np.ptp(lm, axis=0).max() > 1.0:  # (a degenerate answer keeps the previous box)
                box = square_box(lm, self.box_scale)
            pts, sig = self.predict_crops(crop_image(img, box, self.input_size)[None], mirror=mirror)
            k = box[2] / self.input_size
            lm, sigma = pts[0] * k + np.array(box[:2]), sig[0] * k
        return RegressorResult(landmarks=lm, sigma=sigma, box=box)


#: The shipped weights (``python -m face3d.synth.train``, recipe in that module's docstring).
SHIPPED_WEIGHTS = "landmarks/regressor68.pt"
_SHIPPED: list[LandmarkRegressor | None] = []


def shipped_regressor() -> LandmarkRegressor | None:
    """The regressor of :data:`SHIPPED_WEIGHTS` in face3d's assets, loaded once per process; None
    when the file is not there. Env ``FACE3D_REGRESSOR``: ``off`` turns it off, a path to a
    checkpoint of ``face3d.synth.train`` replaces it."""
    import os

    from face3d.paths import assets_dir

    env = os.environ.get("FACE3D_REGRESSOR", "")
    if env.lower() in ("off", "0", "none"):
        return None
    if not _SHIPPED:
        path = Path(env) if env else assets_dir() / SHIPPED_WEIGHTS
        _SHIPPED.append(LandmarkRegressor.load(path) if env or path.is_file() else None)
    return _SHIPPED[0]


def checkpoint_state(net: LandmarkNet, **extra: Any) -> dict[str, Any]:
    """The dict ``LandmarkRegressor.load`` reads: weights, config, plus ``extra`` fields."""
    import dataclasses

    return {"model": net.state_dict(), "config": dataclasses.asdict(net.config), **extra}
