"""The analysis-by-synthesis fitter: landmarks → +photometric → +albedo & SH lighting.

One code path fits B images (B = 1 for a photo, B > 1 for several photos or video frames):
identity (and albedo) can be shared across the batch, expression, pose, camera and lighting are
per image, and an optional temporal term smooths consecutive frames. Any
:class:`~face3d.models.MorphableModel` works (basic, ICT, FLAME, BFM).

Parameters (all tensors, batch-first):
  shape (S, K_id), albedo (S, K_alb), albedo_gain (S, 3), albedo_smooth (S, K_s, 3) (the
  :mod:`.smooth_albedo` field of models without an albedo space; K_s = 0 otherwise) with
  S = 1 when shared, else B;
  expression (B, K_exp), pose (B, 3) axis-angle head rotation, translation (B, 3) metres in
  camera space (the camera has identity rotation, X_cam = R_pose·v + t), log_focal (B,) log
  pixels, sh (B, 9, 3) second-order SH irradiance coefficients (face3d.renderers.shading convention).

Stages:
1. ``landmarks``: closed-form rigid init (PnP from landmark correspondences, :mod:`.init`),
   then Adam on a robust landmark loss with per-landmark weights and yaw-dependent contour
   weights, plus identity/expression priors.
2. ``lighting``: SH lighting and albedo colour in closed form (linear least squares on the
   skin pixels, geometry fixed).
3. ``photometric``: Adam on all parameters with the robust photometric loss inside the skin
   mask (occluders down-weighted), landmark loss and priors (identity, expression, albedo,
   albedo symmetry, lighting).

Settings: every tuning number (step counts, term weights, per-parameter learning rates and
schedules, lighting thresholds, crop size, temporal weights) is a field of :class:`FitConfig` or
of one of its nested frozen groups, with one default; :data:`SETTING_RANGES` bounds each.
Presets (:meth:`FitConfig.preset`, :data:`PRESETS`) are data: ``default``, and ``fast``
(landmarks only, half the steps).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import time
from dataclasses import dataclass, field
from typing import Callable, ClassVar, Iterator, Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from face3d.errors import BadInputError, FittingError
from face3d.fitting import losses, priors, smooth_albedo
from face3d.fitting.camera import crop_intrinsics, intrinsics, project
from face3d.fitting.init import solve_pnp
from face3d.fitting.optim import Adam
from face3d.models.model import MorphableModel, axis_angle_to_matrix, model_memo, sliced_bases

#: Per-landmark weights of the iBUG-68 set: jaw contour, brows, nose, eyes, mouth.
IBUG68_WEIGHTS = np.array([0.5] * 17 + [0.7] * 10 + [1.0] * 9 + [1.5] * 12 + [1.0] * 20, np.float32)
#: iBUG-68 contour landmarks on the image-left (subject's right) and image-right cheek.
IBUG68_CONTOUR = (list(range(0, 8)), list(range(9, 17)))

Progress = Callable[[str, int, int], None]


#: Allowed values of every FitConfig setting (a nested one as 'group.field', e.g.
#: 'landmark_stage.lr_shape'): (kind, low, high), bounds inclusive; kind 'int',
#: 'float', 'positive' (a float > low) or 'bool'. ``threads`` may also be None (leave torch's
#: setting). These are sanity limits: values outside them crash (render_size 0), diverge
#: (lr 1e9: 226 % landmark error) or run for hours.
SETTING_RANGES: dict[str, tuple[str, float, float]] = {
    "landmark_steps": ("int", 0, 10_000),
    "photometric_steps": ("int", 0, 10_000),
    "render_size": ("int", 32, 1024),
    "lr": ("positive", 0.0, 1.0),
    "w_landmark": ("float", 0.0, 1e4),
    "photometric_landmark_scale": ("float", 0.0, 1e3),
    "photometric_prior_scale": ("float", 0.0, 1e3),
    "w_photometric": ("float", 0.0, 1e4),
    "w_identity": ("float", 0.0, 1e4),
    "w_expression": ("float", 0.0, 1e4),
    "w_albedo": ("float", 0.0, 1e4),
    "w_symmetry": ("float", 0.0, 1e4),
    "w_lighting": ("float", 0.0, 1e4),
    "w_temporal": ("float", 0.0, 1e4),
    "landmark_sigma": ("positive", 0.0, 1.0),
    "contour_strength": ("float", 0.0, 100.0),
    "w_learned": ("float", 0.0, 1e4),
    "photometric": ("bool", 0, 1),
    "skin_colour": ("bool", 0, 1),
    "share_identity": ("bool", 0, 1),
    "seed": ("int", 0, 2**32 - 1),
    "threads": ("int", 1, 256),
    "landmark_stage.lr_shape": ("float", 0.0, 1e3),
    "landmark_stage.lr_expression": ("float", 0.0, 1e3),
    "landmark_stage.lr_pose": ("float", 0.0, 1e3),
    "landmark_stage.lr_translation": ("float", 0.0, 1e3),
    "landmark_stage.lr_focal": ("float", 0.0, 1e3),
    "landmark_stage.first_drop_at": ("float", 0.0, 1.0),
    "landmark_stage.first_drop": ("float", 0.0, 10.0),
    "landmark_stage.second_drop_at": ("float", 0.0, 1.0),
    "landmark_stage.second_drop": ("float", 0.0, 10.0),
    "lighting_stage.min_pixels": ("int", 9, 10_000_000),
    "lighting_stage.coverage": ("positive", 0.0, 1.0),
    "lighting_stage.gain_min": ("positive", 0.0, 100.0),
    "lighting_stage.gain_max": ("positive", 0.0, 100.0),
    "photometric_stage.lr_shape": ("float", 0.0, 1e3),
    "photometric_stage.lr_expression": ("float", 0.0, 1e3),
    "photometric_stage.lr_pose": ("float", 0.0, 1e3),
    "photometric_stage.lr_translation": ("float", 0.0, 1e3),
    "photometric_stage.lr_focal": ("float", 0.0, 1e3),
    "photometric_stage.lr_albedo": ("float", 0.0, 1e3),
    "photometric_stage.lr_albedo_smooth": ("float", 0.0, 1e3),
    "photometric_stage.lr_lighting": ("float", 0.0, 1e3),
    "photometric_stage.albedo_gain_min": ("positive", 0.0, 100.0),
    "photometric_stage.albedo_gain_max": ("positive", 0.0, 100.0),
    "photometric_stage.sigma": ("positive", 0.0, 10.0),
    "photometric_stage.occluder_k": ("positive", 0.0, 1e3),
    "photometric_stage.occluder_every": ("int", 1, 10_000),
    "photometric_stage.crop_scale": ("float", 0.5, 10.0),
    "photometric_stage.prefilter_above": ("float", 1.0, 100.0),
    "temporal.expression": ("float", 0.0, 1e6),
    "temporal.pose": ("float", 0.0, 1e6),
    "temporal.translation": ("float", 0.0, 1e6),
    "learned.sigma_ref": ("positive", 0.0, 1.0),
    "learned.weight_min": ("float", 0.0, 1e3),
    "learned.weight_max": ("float", 0.0, 1e3),
    "learned.inner_scale": ("float", 0.0, 1e3),
    "learned.yaw_deg_min": ("float", 0.0, 90.0),
    "learned.yaw_deg_max": ("float", 0.0, 90.0),
    "learned.mediapipe_fade": ("float", 0.0, 1.0),
    "learned.report_gate": ("float", 0.0, 1.0),
}


def check_setting(name: str, value: object, spec: tuple[str, float, float] | None = None) -> None:
    """Raise :class:`BadInputError` unless ``value`` fits ``spec`` ((kind, low, high), default:
    FitConfig setting ``name``'s entry of :data:`SETTING_RANGES`); the message names the setting,
    the value and the allowed range. A ``name`` with a space is used as the label as is
    (e.g. "argument 'focal'"), any other is shown as "setting 'name'"."""
    label = name if " " in name else f"setting '{name}'"
    if spec is None:
        if name not in SETTING_RANGES:
            raise BadInputError(f"{label}: unknown; settings are {sorted(SETTING_RANGES)}")
        if name == "threads" and value is None:
            return
        spec = SETTING_RANGES[name]
    kind, lo, hi = spec
    if kind == "bool":
        if not isinstance(value, (bool, np.bool_)):
            raise BadInputError(f"{label}: expected true or false, got {value!r}")
        return
    is_int = isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))
    ok_type = is_int or (kind != "int" and isinstance(value, (float, np.floating)))
    lo_s, hi_s = (f"{int(x)}" if float(x).is_integer() and abs(x) < 1e10 else f"{x:g}" for x in (lo, hi))
    allowed = (f"an integer from {lo_s} to {hi_s}" if kind == "int" else
               f"a number {'>' if kind == 'positive' else '>='} {lo_s} and <= {hi_s}")
    if not ok_type:
        raise BadInputError(f"{label}: expected {allowed}, got {value!r}")
    v = float(value)  # type: ignore[arg-type]
    if not math.isfinite(v) or v < lo or v > hi or (kind == "positive" and v <= lo):
        raise BadInputError(f"{label}: {value!r} is out of range; allowed: {allowed}")



@dataclass(frozen=True)
class _Part:
    """A group of FitConfig settings (frozen; checked on construction against :data:`SETTING_RANGES`
    under ``'<key>.<field>'``)."""

    key: ClassVar[str] = ""
    #: (low, high) field pairs whose low may not exceed its high.
    ordered: ClassVar[tuple[tuple[str, str], ...]] = ()

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            check_setting(f"{self.key}.{f.name}", getattr(self, f.name))
        for lo, hi in self.ordered:
            if getattr(self, lo) > getattr(self, hi):
                raise BadInputError(f"setting '{self.key}': {lo} {getattr(self, lo)} is above {hi} {getattr(self, hi)}")

    @classmethod
    def coerce(cls, value: object) -> "_Part":
        """``value`` as this part: an instance as is, a dict as overrides of the defaults."""
        if isinstance(value, cls):
            return value
        if isinstance(value, dict):
            names = {f.name for f in dataclasses.fields(cls)}
            unknown = sorted(set(value) - names)
            if unknown:
                raise BadInputError(f"setting '{cls.key}': unknown field(s) {unknown}; fields are {sorted(names)}")
            return cls(**value)
        raise BadInputError(f"setting '{cls.key}': expected a {cls.__name__} or a dict of its fields, got {value!r}")


@dataclass(frozen=True)
class LandmarkStage(_Part):
    """Adam of the landmark stage: per-parameter learning rates (multiples of :attr:`FitConfig.lr`)
    and a two-step decay of all of them."""

    key: ClassVar[str] = "landmark_stage"
    lr_shape: float = 5.0
    """Identity coefficients (optimised in units of their standard deviation)."""
    lr_expression: float = 1.0
    """Expression coefficients."""
    lr_pose: float = 0.5
    """Head rotation (axis-angle, radians)."""
    lr_translation: float = 0.1
    """Camera-space translation (metres)."""
    lr_focal: float = 1.0
    """Log focal length."""
    first_drop_at: float = 0.6
    """Fraction of the steps after which every learning rate is scaled by ``first_drop``."""
    first_drop: float = 0.3
    """Learning-rate factor from ``first_drop_at`` to ``second_drop_at``."""
    second_drop_at: float = 0.85
    """Fraction of the steps after which every learning rate is scaled by ``second_drop``."""
    second_drop: float = 0.09
    """Learning-rate factor from ``second_drop_at`` to the end (of the initial rate, not cumulative)."""


@dataclass(frozen=True)
class LightingStage(_Part):
    """The closed-form lighting stage: grey SH lighting and an albedo colour gain per image."""

    key: ClassVar[str] = "lighting_stage"
    ordered: ClassVar[tuple[tuple[str, str], ...]] = (("gain_min", "gain_max"),)
    min_pixels: int = 30
    """Fewest covered skin pixels to solve for the lighting; below it the image keeps unit ambient light."""
    coverage: float = 0.99
    """Rendered alpha above which a crop pixel counts as covered by the face."""
    gain_min: float = 0.2
    """Lower bound of the per-channel albedo colour gain solved here."""
    gain_max: float = 3.0
    """Upper bound of the per-channel albedo colour gain solved here."""


@dataclass(frozen=True)
class PhotometricStage(_Part):
    """The photometric stage: the crops it renders, its robust colour loss and its Adam
    learning rates (multiples of :attr:`FitConfig.lr`)."""

    key: ClassVar[str] = "photometric_stage"
    ordered: ClassVar[tuple[tuple[str, str], ...]] = (("albedo_gain_min", "albedo_gain_max"),)
    lr_shape: float = 2.0
    """Identity coefficients (units of their standard deviation)."""
    lr_expression: float = 0.5
    """Expression coefficients."""
    lr_pose: float = 0.1
    """Head rotation (axis-angle, radians)."""
    lr_translation: float = 0.02
    """Camera-space translation (metres)."""
    lr_focal: float = 0.2
    """Log focal length."""
    lr_albedo: float = 3.0
    """Albedo coefficients (units of their standard deviation)."""
    lr_albedo_smooth: float = 0.3
    """Smooth albedo field of models without an albedo space."""
    lr_lighting: float = 0.3
    """Albedo colour gain and SH lighting coefficients."""
    albedo_gain_min: float = 0.05
    """Lower bound of the albedo colour gain (projected after every step)."""
    albedo_gain_max: float = 3.0
    """Upper bound of the albedo colour gain (projected after every step)."""
    sigma: float = 0.1
    """Scale of the robust (Charbonnier) colour residual, in [0, 1] colour units."""
    occluder_k: float = 3.0
    """Pixels whose residual exceeds this many median residuals are down-weighted as occluders."""
    occluder_every: int = 5
    """Re-estimate the occluder weights every this many steps."""
    crop_scale: float = 1.6
    """Side of the square crop fitted, in multiples of the landmarks' extent."""
    prefilter_above: float = 1.5
    """Box-blur a photo before resampling when its crop shrinks by more than this factor."""


@dataclass(frozen=True)
class TemporalWeights(_Part):
    """Relative weights, inside the temporal term (:attr:`FitConfig.w_temporal`), of the squared
    frame-to-frame differences of each parameter."""

    key: ClassVar[str] = "temporal"
    expression: float = 1.0
    """Expression coefficients."""
    pose: float = 10.0
    """Head rotation (axis-angle, radians)."""
    translation: float = 100.0
    """Camera-space translation (metres)."""


@dataclass(frozen=True)
class LearnedPoints(_Part):
    """Per-point weights of the learned regressor's 68 points (:func:`add_learned_targets`): a point
    predicted with standard deviation σ weighs :attr:`FitConfig.w_learned` × (``sigma_ref`` · d / σ)²,
    d the diagonal of the face's landmark box, clipped to [``weight_min``, ``weight_max``]."""

    key: ClassVar[str] = "learned"
    ordered: ClassVar[tuple[tuple[str, str], ...]] = (("weight_min", "weight_max"), ("yaw_deg_min", "yaw_deg_max"))
    sigma_ref: float = 0.01
    """Standard deviation (fraction of the landmark-box diagonal) of a point that weighs 1."""
    weight_min: float = 0.05
    """Lowest weight of a learned point (an unsure one)."""
    weight_max: float = 2.0
    """Highest weight of a learned point (a sure one)."""
    inner_scale: float = 1.0
    """Factor on the inner points (17–67: brows, nose, eyes, mouth), where MediaPipe is the surer
    reader on real photos; the jaw (0–16, the 3D convention MediaPipe's silhouette points lack) keeps 1."""
    yaw_deg_min: float = 45.0
    """Below this head turn from the camera (yaw, or yaw and pitch together: :func:`learned_gate`;
    from a rigid fit to the learned points themselves) the learned points weigh 0 ..."""
    yaw_deg_max: float = 60.0
    """... and above this one fully (smoothstep between): MediaPipe reads frontal faces better, the
    regressor profiles (benchmarks/README.md). Both 0: no gate."""
    mediapipe_fade: float = 1.0
    """MediaPipe's weights × (1 − ``mediapipe_fade`` × gate): 1 hands a full profile to the learned points alone
    (development profiles: 4.37 against 4.40 % NME with 0 at w_learned 100, 4.37 against 4.68 at 30)."""
    report_gate: float = 0.5
    """From this gate on, a face's reported landmark set, targets and error are the learned 68 points
    (the ones the fit follows there; :attr:`FitResult.learned_followed`)."""


#: The nested settings of :class:`FitConfig`: field name → its class.
CONFIG_PARTS: dict[str, type[_Part]] = {c.key: c for c in (LandmarkStage, LightingStage, PhotometricStage, TemporalWeights, LearnedPoints)}


@dataclass
class FitConfig:
    """Settings of :func:`fit`: every tuning number of the fitter, each with one default (tuned for
    speed on a small CPU, ≈ 1–3 s per photo). Nested groups (:class:`LandmarkStage`,
    :class:`LightingStage`, :class:`PhotometricStage`, :class:`TemporalWeights`) are frozen; pass
    one, or a dict of the fields to change (``FitConfig(landmark_stage={"lr_shape": 4.0})``).

    ``photometric_landmark_scale`` and ``photometric_prior_scale``: lowering them (e.g. 0.03 and
    0.3) lets shading move the shape away from the detected landmarks: more accurate shape when the
    model can explain the image (synthetic ICT renders, benchmarks/README.md), but a larger
    landmark error on real photos fitted with ``basic``, so the defaults keep 1 and 1. (A
    ``'shape'`` preset that lowered both was dropped: on faces wearing real-photo textures it beat
    the default on 5 of 23, see :data:`REMOVED_PRESETS`.)"""

    landmark_steps: int = 60
    """Adam steps of the landmark stage."""
    photometric_steps: int = 20
    """Adam steps of the photometric stage."""
    render_size: int = 160
    """Side in pixels of the square face crop rendered by the photometric stage."""
    lr: float = 0.03
    """Base learning rate; each parameter's rate is a multiple of it (``landmark_stage``, ``photometric_stage``)."""
    w_landmark: float = 1.0
    """Weight of the robust landmark term."""
    photometric_landmark_scale: float = 1.0
    """Factor on ``w_landmark`` during the photometric stage."""
    photometric_prior_scale: float = 1.0
    """Factor on ``w_identity`` and ``w_expression`` during the photometric stage."""
    w_photometric: float = 1.0
    """Weight of the robust colour term."""
    w_identity: float = 2e-3
    """Weight of the Gaussian identity prior."""
    w_expression: float = 2e-3
    """Weight of the expression prior."""
    w_albedo: float = 1e-3
    """Weight of the Gaussian albedo priors (albedo space and smooth albedo field)."""
    w_symmetry: float = 1.0
    """Weight of the left-right albedo symmetry prior."""
    w_lighting: float = 1e-3
    """Weight of the SH lighting prior."""
    w_temporal: float = 0.0
    """Weight of the frame-to-frame smoothness term (B > 1 frames; per-parameter weights in ``temporal``)."""
    landmark_sigma: float = 0.03
    """Scale of the robust landmark residual, as a fraction of the face size."""
    w_learned: float = 100.0
    """Weight of the learned regressor's 68 points (:attr:`FitTarget.learned68`) beside MediaPipe's 478, on turned heads
    (:attr:`learned`'s yaw gate; 0: MediaPipe's alone, the regressor's points then fitted only where MediaPipe reads
    no face). 100: the best of {0, 10, 30, 100} on development faces (benchmarks/README.md)."""
    contour_strength: float = 2.0
    """How strongly the jaw-contour landmarks on the side turned away are down-weighted."""
    photometric: bool = True
    """Run the lighting and photometric stages (needs the images)."""
    skin_colour: bool = True
    """Weight the colour term by a skin-colour model of each image (:func:`face3d.fitting.losses.skin_mask`);
    False keeps only the landmark face region."""
    share_identity: bool = True
    """One identity and albedo for all B images (else one per image)."""
    seed: int = 0
    """Seed of torch's generator at the start of the fit."""
    threads: int | None = 1
    """Torch intra-op threads while fitting (None: leave torch's setting); one is fastest for these small tensors."""
    landmark_stage: LandmarkStage = LandmarkStage()
    """Learning rates and schedule of the landmark stage."""
    lighting_stage: LightingStage = LightingStage()
    """Thresholds and bounds of the closed-form lighting stage."""
    photometric_stage: PhotometricStage = PhotometricStage()
    """Crops, robust loss and learning rates of the photometric stage."""
    temporal: TemporalWeights = TemporalWeights()
    """Per-parameter weights inside the temporal term."""
    learned: LearnedPoints = LearnedPoints()
    """How each learned point's predicted confidence weighs it."""

    def __post_init__(self) -> None:
        for key, part in CONFIG_PARTS.items():
            setattr(self, key, part.coerce(getattr(self, key)))
        self.validate()

    def validate(self) -> "FitConfig":
        """Check every setting against :data:`SETTING_RANGES` (type and range); returns self.

        Raises :class:`BadInputError` naming the setting, the bad value and the allowed range.
        Called on construction (and by ``dataclasses.replace``), so before any work.
        """
        for f in dataclasses.fields(self):
            if f.name in CONFIG_PARTS:
                if not isinstance(getattr(self, f.name), CONFIG_PARTS[f.name]):
                    CONFIG_PARTS[f.name].coerce(getattr(self, f.name))  # raises with the expected type
                continue
            check_setting(f.name, getattr(self, f.name))
        return self

    @classmethod
    def preset(cls, name: str = "default", **overrides: object) -> "FitConfig":
        """The settings of preset ``name`` (a key of :data:`PRESETS`), then ``overrides``; an override
        of a nested group given as a dict changes only the fields it names."""
        if isinstance(name, str) and name in REMOVED_PRESETS:
            raise BadInputError(f"fit preset {name!r} was removed: {REMOVED_PRESETS[name]}")
        if not isinstance(name, str) or name not in PRESETS:
            raise BadInputError(f"fit preset: expected one of {sorted(PRESETS)}, got {name!r}")
        merged = dict(PRESETS[name])
        for k, v in overrides.items():
            base = merged.get(k)
            merged[k] = {**base, **v} if isinstance(base, dict) and isinstance(v, dict) else v
        return cls.from_dict(merged)

    @classmethod
    def from_dict(cls, settings: Mapping[str, object]) -> "FitConfig":
        """The config with ``settings`` (e.g. ``dataclasses.asdict`` of one, as params.json records
        it; nested groups as dicts of their fields) over the defaults; unknown names raise
        :class:`BadInputError`."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(settings) - names)
        if unknown:
            raise BadInputError(f"fit settings: unknown name(s) {unknown}; settings are {sorted(names)}")
        return cls(**settings)  # type: ignore[arg-type]


#: Named FitConfig settings. 'fast': landmarks only (no photometric stage) with half the landmark
#: steps, for batch previews and tracking (``face3d reconstruct --fast``; benchmarks/README.md).
PRESETS: dict[str, dict[str, object]] = {
    "default": {},
    "fast": {"landmark_steps": 30, "photometric": False},
}

#: Presets that existed once, and why they went (the error message for a caller still naming them).
REMOVED_PRESETS: dict[str, str] = {
    "shape": "on synthetic faces wearing real-photo textures it was better than the default on only 5 of 23 faces "
             "(benchmarks/README.md); to let shading move the shape, set photometric_landmark_scale=0, "
             "photometric_prior_scale=0.03, photometric_steps=100, render_size=256 yourself",
}


@dataclass
class FitTarget:
    """One image to fit: pixels (H, W, 3) float32 in [0, 1] (or None: landmarks only) and
    landmarks (L, 2) pixels in the image, in the scheme 'ibug68' or 'mediapipe478'; learned68
    (68, 3) or None: the learned regressor's 68 points (x, y px, 3D convention) and each point's
    predicted standard deviation (px), fitted beside MediaPipe's points (``FitConfig.w_learned``)."""

    landmarks: np.ndarray
    scheme: str
    width: int
    height: int
    image: np.ndarray | None = None
    learned68: np.ndarray | None = None


@dataclass
class FitResult:
    """Fitted parameters (see module docstring) plus per-stage losses and timings (seconds)."""

    shape: Tensor
    expression: Tensor
    pose: Tensor
    translation: Tensor
    focal: Tensor
    albedo: Tensor
    albedo_gain: Tensor
    sh: Tensor
    landmark_set: str
    landmark_targets: Tensor
    losses: dict[str, float] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    albedo_smooth: Tensor | None = None
    learned_targets: Tensor | None = None
    """(B, 68, 2) px: the learned points the fit followed beside ``landmark_set``, where any image's gate is > 0."""
    learned_followed: Tensor | None = None
    """(B,) bool: the image's yaw gate reached ``LearnedPoints.report_gate``, so the fit follows the
    learned points there (its reported landmark set is then theirs, 'ibug68')."""

    def per_image(self, b: int) -> dict[str, Tensor]:
        """The parameters of image ``b`` (shared ones broadcast), each without batch dim."""
        pick = lambda t: t[min(b, t.shape[0] - 1)]  # noqa: E731
        return {"shape": pick(self.shape), "expression": self.expression[b], "pose": self.pose[b],
                "translation": self.translation[b], "focal": self.focal[b], "albedo": pick(self.albedo),
                "albedo_gain": pick(self.albedo_gain), "sh": self.sh[b],
                "albedo_smooth": pick(self.albedo_smooth) if self.albedo_smooth is not None else torch.zeros(0, 3)}


# ---------------------------------------------------------------------------- correspondences
def landmark_plan(model: MorphableModel, targets: list[FitTarget]) -> tuple[str, np.ndarray, np.ndarray, tuple[list[int], list[int]]]:
    """Pick the landmark set used for fitting: (set name, targets (B, L, 2), weights (L,), contour).

    MediaPipe-478 targets are fitted with the model's 'mediapipe478' embedding when it has one,
    otherwise they are mapped to iBUG-68 (face3d.landmarks.mapping).
    """
    schemes = {t.scheme for t in targets}
    if schemes <= {"mediapipe478"} and "mediapipe478" in model.embeddings:
        from face3d.fitting.mediapipe_sets import MP_CONTOUR_LEFT, MP_CONTOUR_RIGHT, mediapipe_weights

        pts = np.stack([t.landmarks[:, :2] for t in targets]).astype(np.float32)
        return "mediapipe478", pts, mediapipe_weights(), (list(MP_CONTOUR_LEFT), list(MP_CONTOUR_RIGHT))
    if "ibug68" not in model.embeddings:
        raise FittingError(
            f"model '{model.name}' has neither an 'ibug68' nor a 'mediapipe478' landmark embedding: calibrate one with "
            f"'python -m face3d.models.calibrate {model.name} -o emb.npz', then face3d.models.calibrate.attach_embedding(model, 'emb.npz')")
    out = []
    for t in targets:
        if t.scheme == "ibug68":
            out.append(t.landmarks[:, :2])
        elif t.scheme == "mediapipe478":
            from face3d.landmarks.mapping import mediapipe_to_ibug68

            out.append(mediapipe_to_ibug68(np.asarray(t.landmarks, np.float64))[:, :2])
        else:
            raise BadInputError(f"unknown landmark scheme {t.scheme!r} (expected 'ibug68' or 'mediapipe478')")
    return "ibug68", np.stack(out).astype(np.float32), IBUG68_WEIGHTS, IBUG68_CONTOUR


def learned_gate(pose: Tensor, how: LearnedPoints) -> np.ndarray:
    """(B,) factor in [0, 1] on the learned points by how far the head turns from the camera: the
    angle between the face's +Z axis (axis-angle ``pose`` (B, 3)) and the camera's +Z, i.e. |yaw| for
    a head that only turns sideways, and yaw and pitch together otherwise (a profile seen from
    above or below is as far from frontal as a level one); smoothstep from ``how.yaw_deg_min`` (0)
    to ``how.yaw_deg_max`` (1); all ones when both are 0."""
    if how.yaw_deg_max <= 0:
        return np.ones(pose.shape[0])
    fwd_z = axis_angle_to_matrix(pose.detach().double().cpu())[:, 2, 2].numpy()
    turn = np.degrees(np.arccos(np.clip(fwd_z, -1.0, 1.0)))
    t = np.clip((turn - how.yaw_deg_min) / max(how.yaw_deg_max - how.yaw_deg_min, 1e-9), 0.0, 1.0)
    return t * t * (3 - 2 * t)


def add_learned_targets(targets: list[FitTarget], lm_set: str, points: np.ndarray, weights: np.ndarray,
                        scale: float | np.ndarray, how: LearnedPoints = LearnedPoints()) -> tuple[str, np.ndarray, np.ndarray]:
    """Append the learned 68 points of every target to a MediaPipe-478 plan: (set
    'mediapipe478+ibug68', points (B, 546, 2), weights (B, 546)). The learned points weigh
    ``scale`` (a number, or (B,) one per image) × (σ_ref / σ)², clipped (``how``: :class:`LearnedPoints`).
    The plan is returned unchanged when every scale is 0, the set is not 'mediapipe478', or a
    target has no learned points."""
    sc = np.broadcast_to(np.asarray(scale, np.float64), (len(targets),))
    if np.all(sc <= 0) or lm_set != "mediapipe478" or any(t.learned68 is None for t in targets):
        return lm_set, points, weights
    learned = np.stack([np.asarray(t.learned68, np.float64) for t in targets])  # type: ignore[arg-type]
    diag = np.linalg.norm(points.max(1) - points.min(1), axis=-1)[:, None]  # (B, 1) px
    w = sc[:, None] * np.clip((how.sigma_ref * diag / np.maximum(learned[..., 2], 1e-6)) ** 2, how.weight_min, how.weight_max)
    w[:, 17:] *= how.inner_scale
    base = np.broadcast_to(weights, (len(targets), weights.shape[-1]))
    return (f"{lm_set}+ibug68", np.concatenate([points, learned[..., :2].astype(np.float32)], 1),
            np.concatenate([base, w], 1).astype(np.float32))


def set_landmarks(model: MorphableModel, vertices: Tensor, lm_set: str) -> Tensor:
    """Landmarks (B, L, 3) of ``vertices`` (B, V, 3) for a set name or '+'-joined set names."""
    return torch.cat([model.landmarks(vertices, s) for s in lm_set.split("+")], 1)


def face_scale(points: Tensor) -> Tensor:
    """Face size (B,) in pixels: the diagonal of the landmarks' bounding box."""
    ext = points.amax(1) - points.amin(1)
    return ext.norm(dim=-1).clamp_min(1.0)


# ---------------------------------------------------------------------------- the fitter
@contextlib.contextmanager
def single_thread(threads: int | None = 1) -> Iterator[None]:
    """Run torch on ``threads`` intra-op threads inside the block (restored afterwards)."""
    n = torch.get_num_threads()
    torch.set_num_threads(threads or n)
    try:
        yield
    finally:
        torch.set_num_threads(n)


class _Params:
    """The optimised tensors and how to turn them into vertices / projections."""

    def __init__(self, model: MorphableModel, B: int, S: int, device: torch.device) -> None:
        f32 = dict(dtype=torch.float32, device=device)
        self.model = model
        self.id_std = model.id_std.to(device).clamp_min(1e-12)
        self.alb_std = (model.albedo_std.to(device) if model.albedo_std is not None else torch.ones(model.n_albedo, device=device)).clamp_min(1e-12)
        self.shape_n = torch.zeros(S, model.n_shape, **f32)
        self.expression = torch.zeros(B, model.n_expression, **f32)
        self.pose = torch.zeros(B, 3, **f32)
        self.translation = torch.zeros(B, 3, **f32)
        self.log_focal = torch.zeros(B, **f32)
        self.albedo_n = torch.zeros(S, model.n_albedo, **f32)
        self.albedo_gain = torch.ones(S, 3, **f32)
        self.smooth_basis = smooth_albedo.smooth_albedo_basis(model).to(device)  # (V, K_s); K_s = 0 with an albedo space
        self.albedo_smooth = torch.zeros(S, self.smooth_basis.shape[1], 3, **f32)
        from face3d import renderers

        self.sh = renderers.ambient_sh(1.0, batch=B).to(device)  # unit irradiance until the lighting stage
        self.B = B
        self.bounded = _bounded(model)  # ARKit weights, kept in [0, 1] (asked on every step: cached)

    @property
    def shape(self) -> Tensor:
        """Raw identity coefficients (S, K_id) (optimised as ``shape_n = shape / id_std``)."""
        return self.shape_n * self.id_std

    @property
    def albedo(self) -> Tensor:
        """Raw albedo coefficients (S, K_alb) (optimised as ``albedo_n = albedo / albedo_std``)."""
        return self.albedo_n * self.alb_std

    def posed(self, sub: _Subset, R: Tensor | None = None) -> Tensor:
        """Posed vertices ``sub.idx`` (B, N, 3) in world space (camera translation not applied);
        ``R`` (B, 3, 3): the rotation of ``pose`` when the caller has it. Linear models evaluate
        only those vertices; articulated models (a ``forward`` override) run the full model."""
        if self.model.is_articulated:
            return self.vertices()[:, sub.idx]
        v = self.model.blend_shapes(self.expand(self.shape), self.expression, self.B, vertices=sub.idx)
        return v @ (axis_angle_to_matrix(self.pose) if R is None else R).transpose(1, 2)

    def expand(self, t: Tensor) -> Tensor:
        return t.expand(self.B, *t.shape[1:]) if t.shape[0] == 1 and self.B > 1 else t

    def vertices(self) -> Tensor:
        """Posed model vertices (B, V, 3) in world space (camera translation not applied)."""
        return self.model(shape=self.expand(self.shape), expression=self.expression, pose=self.pose)

    def base_albedo(self) -> Tensor:
        """Per-vertex albedo (B, V, 3) in [0, 1]."""
        m = self.model
        if m.per_vertex_albedo:
            a = m.albedo(self.expand(self.albedo)) if m.n_albedo else m.albedo_mean.unsqueeze(0).expand(self.B, -1, -1)
        else:
            a = smooth_albedo.apply_smooth_albedo(self.pose.new_full((self.B, m.n_vertices, 3), 0.6), self.smooth_basis,
                                                  self.expand(self.albedo_smooth))
        return (a * self.expand(self.albedo_gain).unsqueeze(1)).clamp(0, 1)


def _bounded(model: MorphableModel) -> bool:
    return model.has_arkit


@dataclass(frozen=True)
class _Subset:
    """The model vertices a stage evaluates: ids ``idx`` (N,) ascending; the landmark set's triangle
    corners ``lm_corners`` (L, 3) as positions in ``idx`` with barycentric coordinates ``lm_bary``
    (L, 3); the rendered triangles ``faces`` (F', 3) as positions in ``idx`` (none: (0, 3))."""

    idx: Tensor
    lm_corners: Tensor
    lm_bary: Tensor
    faces: Tensor

    def landmarks(self, verts: Tensor) -> Tensor:
        """Landmarks (B, L, 3) on ``verts`` (B, N, 3), the vertices ``idx``."""
        return (verts[:, self.lm_corners] * self.lm_bary.unsqueeze(0).unsqueeze(-1)).sum(2)


def _subset(model: MorphableModel, lm_set: str, faces: Tensor | None = None) -> _Subset:
    """The vertices of landmark set ``lm_set`` (a set name or '+'-joined names) and of the triangles
    ``faces`` (F', 3) of ``model`` (default none)."""
    embs = [model.embeddings[s] for s in lm_set.split("+")]
    corners = torch.cat([model.faces[e.tri.to(model.faces.device)] for e in embs])
    L = corners.shape[0]
    tri = model.faces.new_zeros(0, 3) if faces is None else faces
    idx, inv = torch.unique(torch.cat([corners.reshape(-1), tri.reshape(-1)]), return_inverse=True)
    return _Subset(idx, inv[: 3 * L].reshape(L, 3), torch.cat([e.bary for e in embs]).to(model.template), inv[3 * L :].reshape(-1, 3))


def _init_rigid(p: _Params, lm_set: str, targets: np.ndarray, weights: np.ndarray, sizes: list[tuple[int, int]]) -> list[float]:
    mean = set_landmarks(p.model, p.model.template.unsqueeze(0), lm_set)[0].detach().cpu().numpy()
    errs = []
    for b in range(p.B):
        w, h = sizes[b]
        r = solve_pnp(mean, targets[b], w, h, weights=weights[b] if weights.ndim == 2 else weights)
        p.pose[b] = torch.as_tensor(r.rotation, dtype=torch.float32)
        p.translation[b] = torch.as_tensor(r.translation, dtype=torch.float32)
        p.log_focal[b] = math.log(r.focal)
        errs.append(r.error)
    return errs


def _learned_pose(p: _Params, targets: list[FitTarget], sizes: list[tuple[int, int]]) -> Tensor:
    """Head rotations (B, 3) axis-angle from a rigid fit of the mean face's 'ibug68' to each
    target's learned 68 points (the regressor reads profiles that MediaPipe squashes toward the
    front); MediaPipe's initial pose where a target has none or the model lacks the set."""
    pose = p.pose.detach().clone()
    if "ibug68" not in p.model.embeddings:
        return pose
    mean = p.model.landmarks(p.model.template.unsqueeze(0), "ibug68")[0].detach().cpu().numpy()
    for b, t in enumerate(targets):
        if t.learned68 is not None:
            r = solve_pnp(mean, np.asarray(t.learned68, np.float64)[:, :2], sizes[b][0], sizes[b][1])
            pose[b] = torch.as_tensor(r.rotation, dtype=pose.dtype)
    return pose


def _temporal(p: _Params, w: TemporalWeights) -> Tensor:
    if p.B < 2:
        return p.pose.new_zeros(())
    d = lambda t: ((t[1:] - t[:-1]) ** 2).sum(-1).sum()  # noqa: E731
    return d(p.expression) * w.expression + d(p.pose) * w.pose + d(p.translation) * w.translation


@dataclass(frozen=True)
class _Landmarks:
    """What the fit aims at: landmark set ``lm_set``, targets (B, L, 2) pixels (``points``, and
    ``points_np`` as numpy), per-landmark weights (L,) or (B, L), the contour indices (left, right), and the
    image sizes: ``sizes`` [(W, H)] and as tensors ``W``, ``H`` (B,); ``scale`` (B,) px: :func:`face_scale` of the targets."""

    lm_set: str
    points: Tensor
    points_np: np.ndarray
    weights: Tensor
    contour: tuple[list[int], list[int]]
    sizes: list[tuple[int, int]]
    W: Tensor
    H: Tensor
    scale: Tensor


def _landmark_energy(p: _Params, cfg: FitConfig, lms: _Landmarks, lm3: Tensor, R: Tensor, K: Tensor) -> Tensor:
    """Landmark term and identity / expression / temporal priors of the posed landmarks ``lm3``
    (B, L, 3) (no translation), head rotations ``R`` (B, 3, 3) and intrinsics ``K`` (B, 3, 3)."""
    pred = project(lm3 + p.translation.unsqueeze(1), K)
    tgt = lms.points
    w = losses.contour_weights(R, tgt.shape[1], *lms.contour, strength=cfg.contour_strength) * lms.weights
    lm = losses.landmark_loss(pred, tgt, w, lms.scale, cfg.landmark_sigma).sum()
    reg = cfg.w_identity * priors.gaussian_prior(p.shape_n).sum() * (p.B / p.shape_n.shape[0])
    reg = reg + cfg.w_expression * priors.expression_prior(p.expression, p.bounded).sum()
    reg = reg + cfg.w_temporal * _temporal(p, cfg.temporal)
    return cfg.w_landmark * lm + reg


def _landmark_step(p: _Params, cfg: FitConfig, lms: _Landmarks, sub: _Subset) -> float:
    """:func:`_landmark_energy` of ``sub``'s landmarks (linear model, CPU tensors) in numpy, returned,
    and its gradient written out into the ``.grad`` of shape_n, expression, pose, translation and
    log_focal. The same energy and gradient up to float rounding (tests/test_fitting_subset.py
    compares both in float64): the torch graph of ~100 small ops and ~80 autograd nodes cost ≈ 1.7 ms
    a step, these numpy operations on a few hundred points ≈ 0.8 ms with the Adam update."""
    pose = p.pose.detach().numpy()
    Rn, rot = _rodrigues(pose)
    B, S = p.B, p.shape_n.shape[0]
    tpl, idb, exb = (t.numpy() for t in sliced_bases(p.model, sub.idx))
    sn, e = p.shape_n.detach().numpy(), p.expression.detach().numpy()
    N = tpl.shape[0]
    v = tpl[None] + ((sn * p.id_std.numpy()) @ idb).reshape(-1, N, 3)  # (S or B, N, 3) unposed
    if exb.shape[0]:
        v = v + (e @ exb).reshape(B, N, 3)
    v = np.broadcast_to(v, (B, N, 3))
    corners, bary = sub.lm_corners.numpy(), sub.lm_bary.numpy().astype(v.dtype)
    body = (v[:, corners] * bary[None, :, :, None]).sum(2)  # (B, L, 3) unrotated landmarks
    X = body @ Rn.transpose(0, 2, 1) + p.translation.detach().numpy()[:, None]
    f = np.exp(p.log_focal.detach().numpy())[:, None]
    nz = -X[..., 2]
    z = np.maximum(nz, 1e-6)
    pred = np.stack((f * X[..., 0] / z + lms.W.numpy()[:, None] / 2, lms.H.numpy()[:, None] / 2 - f * X[..., 1] / z), -1)
    # robust landmark term (losses.landmark_loss): Σ_b Σ_l w ρ(r²) / Σ_l w, ρ = r² / (r² + σ²), w with the contour weights
    side = losses.contour_sides(pred.shape[1], lms.contour).numpy().astype(v.dtype)
    k = cfg.contour_strength * 4
    turn = Rn[:, 0, 2][:, None]
    c = np.exp(-k * np.maximum(side * turn, 0))
    weights = lms.weights.numpy()
    w = c * weights
    d = pred - lms.points.numpy()
    scale2 = (lms.scale.numpy() ** 2)[:, None]
    r2 = (d * d).sum(-1) / scale2
    s2 = cfg.landmark_sigma * cfg.landmark_sigma
    rho = r2 / (r2 + s2)
    wsum = np.maximum(w.sum(1), 1e-6)[:, None]
    per_image = (w * rho).sum(1, keepdims=True) / wsum
    loss = cfg.w_landmark * float(per_image.sum()) + cfg.w_identity * float((sn * sn).sum()) * (B / S)
    g_e = cfg.w_expression * 2 * e
    loss += cfg.w_expression * float((e * e).sum())
    if p.bounded:  # priors.expression_prior's barrier outside [0, 1]
        out_lo, out_hi = np.maximum(-e, 0), np.maximum(e - 1, 0)
        loss += cfg.w_expression * priors.EXPRESSION_BARRIER * float((out_lo * out_lo + out_hi * out_hi).sum())
        g_e = g_e + cfg.w_expression * 2 * priors.EXPRESSION_BARRIER * (out_hi - out_lo)
    g_rho = cfg.w_landmark * w / wsum
    g_pred = (g_rho * s2 / (r2 + s2) ** 2 * 2 / scale2)[..., None] * d
    g_c = cfg.w_landmark * (rho - per_image) / wsum * weights
    g_turn = (g_c * c * -k * side * (side * turn > 0)).sum(1)
    gx, gy = g_pred[..., 0], g_pred[..., 1]
    gz = (gy * X[..., 1] - gx * X[..., 0]) * f / (z * z)
    gX = np.stack((gx * f / z, -gy * f / z, np.where(nz >= 1e-6, -gz, 0)), -1)  # (B, L, 3)
    g_R = gX.transpose(0, 2, 1) @ body
    g_R[:, 0, 2] += g_turn
    g_body = gX @ Rn  # (B, L, 3)
    g_v = np.zeros((B, N * 3), v.dtype)
    flat_ids = (corners[None, :, :, None] * 3 + np.arange(3)).reshape(-1)  # (L·3·3,) into N·3
    for b in range(B):
        g_v[b] = np.bincount(flat_ids, (g_body[b][:, None, :] * bary[:, :, None]).reshape(-1), N * 3)
    g_s = g_v @ idb.T
    g_s = (g_s.sum(0, keepdims=True) if S == 1 and B > 1 else g_s) * p.id_std.numpy()
    if exb.shape[0]:
        g_e = g_e + g_v @ exb.T
    g_t = gX.sum(1)
    g_pose = rot(g_R)
    if B > 1 and cfg.w_temporal > 0:  # _temporal: Σ_b |x_b+1 − x_b|² per parameter
        tw = cfg.temporal
        for x, wt, g in ((e, tw.expression, g_e), (pose, tw.pose, g_pose), (p.translation.detach().numpy(), tw.translation, g_t)):
            step = x[1:] - x[:-1]
            loss += cfg.w_temporal * wt * float((step * step).sum())
            g[1:] += 2 * cfg.w_temporal * wt * step
            g[:-1] -= 2 * cfg.w_temporal * wt * step
    p.pose.grad = torch.from_numpy(np.ascontiguousarray(g_pose, dtype=v.dtype))
    p.shape_n.grad = torch.from_numpy(np.ascontiguousarray(g_s + cfg.w_identity * (B / S) * 2 * sn, dtype=v.dtype))
    p.expression.grad = torch.from_numpy(np.ascontiguousarray(g_e, dtype=v.dtype))
    p.translation.grad = torch.from_numpy(np.ascontiguousarray(g_t, dtype=v.dtype))
    p.log_focal.grad = torch.from_numpy(np.ascontiguousarray(((gx * X[..., 0] - gy * X[..., 1]) / z).sum(1) * f[:, 0], dtype=v.dtype))
    return loss


#: The cross-product matrices E_i of the unit axes (3, 3, 3): [ω]× = Σ_i ω_i E_i.
_AXES = np.array([[[0, 0, 0], [0, 0, -1], [0, 1, 0]], [[0, 0, 1], [0, 0, 0], [-1, 0, 0]], [[0, -1, 0], [1, 0, 0], [0, 0, 0]]], np.float64)


def _rodrigues(aa: np.ndarray) -> tuple[np.ndarray, Callable[[np.ndarray], np.ndarray]]:
    """Rotation matrices (B, 3, 3) of axis-angle vectors (B, 3) (:func:`axis_angle_to_matrix`'s formula
    R = I + a·[ω]× + b·[ω]×², a = sin θ / θ, b = (1 − cos θ) / θ², their Taylor series below
    θ² = 1e-8) and the map of a gradient with respect to R (B, 3, 3) to one with respect to ω (B, 3),
    computed in float64 (the derivatives of a and b cancel digits at small θ), R returned in ``aa``'s dtype."""
    dtype, aa = aa.dtype, aa.astype(np.float64)
    th2 = (aa * aa).sum(-1)
    small = th2 < 1e-8
    th = np.where(small, 1.0, np.sqrt(th2))
    sin, cos = np.sin(th), np.cos(th)
    a = np.where(small, 1 - th2 / 6, sin / th)
    b = np.where(small, 0.5 - th2 / 24, (1 - cos) / (th * th))
    da = np.where(small, -1 / 3, (th * cos - sin) / th**3)  # (da/dθ) / θ
    db = np.where(small, -1 / 12, (th * sin - 2 * (1 - cos)) / th**4)  # (db/dθ) / θ
    E = _AXES
    K = np.einsum("bi,ijk->bjk", aa, E)
    K2 = K @ K
    R = np.eye(3) + a[:, None, None] * K + b[:, None, None] * K2

    def grad(gR: np.ndarray) -> np.ndarray:
        # dR/dω_i = (da/θ) ω_i K + a E_i + (db/θ) ω_i K² + b (E_i K + K E_i)
        gK = (gR * K).sum((1, 2))
        gK2 = (gR * K2).sum((1, 2))
        gE = np.einsum("bjk,ijk->bi", gR, E)
        gEK = np.einsum("bjk,ijl,blk->bi", gR, E, K) + np.einsum("bjk,bjl,ilk->bi", gR, K, E)
        return (da * gK + db * gK2)[:, None] * aa + a[:, None] * gE + b[:, None] * gEK

    return R.astype(dtype), grad


def _crop_boxes(tgt: np.ndarray, sizes: list[tuple[int, int]], scale: float = PhotometricStage.crop_scale) -> np.ndarray:
    """Square crops (B, 3) = (x0, y0, side) around the landmarks, ``scale`` × their extent, clamped
    to the image of size ``sizes[b]`` = (W, H): at most its shorter side, moved inside it."""
    boxes = []
    for b, (w, h) in enumerate(sizes):
        lo, hi = tgt[b].min(0), tgt[b].max(0)
        c = (lo + hi) / 2
        side = min(float(max(hi - lo) * scale), float(min(w, h)))
        boxes.append([min(max(c[0] - side / 2, 0.0), w - side), min(max(c[1] - side / 2, 0.0), h - side), side])
    return np.asarray(boxes, np.float32)


def _crop_images(images: list[np.ndarray], boxes: np.ndarray, size: int, prefilter_above: float = PhotometricStage.prefilter_above) -> Tensor:
    """Resample square crops of the images to (B, size, size, 3) (bilinear, zero outside; box-blurred
    first where a crop shrinks by more than ``prefilter_above``)."""
    out = []
    for img, (x0, y0, side) in zip(images, boxes):
        H, W = img.shape[:2]
        t = torch.as_tensor(img, dtype=torch.float32).permute(2, 0, 1).unsqueeze(0)
        g = (torch.arange(size, dtype=torch.float32) + 0.5) * (side / size)
        xs = (x0 + g) / W * 2 - 1
        ys = (y0 + g) / H * 2 - 1
        grid = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), -1).unsqueeze(0)
        if side / size > prefilter_above:  # pre-blur to avoid aliasing when shrinking a lot
            t = _box_blur_window(t, int(round(side / size)), (x0, y0, side))
        out.append(F.grid_sample(t, grid, mode="bilinear", padding_mode="zeros", align_corners=False)[0].permute(1, 2, 0))
    return torch.stack(out)


def _box_blur_window(t: Tensor, k: int, box: tuple[float, float, float]) -> Tensor:
    """``avg_pool2d(t, k, stride 1, padding k // 2, count_include_pad=False)`` of an image (1, C, H, W)
    cropped to (H, W), computed only inside the square ``box`` (x0, y0, side) px plus a 2 px margin
    (the pixels the crop's bilinear resampling reads; the same sums there), zero elsewhere."""
    H, W = t.shape[-2:]
    x0, y0, side = box
    ya, yb = max(math.floor(y0) - 2, 0), min(math.ceil(y0 + side) + 2, H)
    xa, xb = max(math.floor(x0) - 2, 0), min(math.ceil(x0 + side) + 2, W)
    ry, rx = max(ya - k // 2, 0), max(xa - k // 2, 0)  # input rows / columns those outputs average
    part = t[..., ry : min(yb + k, H), rx : min(xb + k, W)]
    pooled = F.avg_pool2d(part, k, stride=1, padding=k // 2, count_include_pad=False)
    out = t.new_zeros(t.shape)
    out[..., ya:yb, xa:xb] = pooled[..., ya - ry : yb - ry, xa - rx : xb - rx]
    return out


def fitting_region(model: MorphableModel) -> Tensor:
    """Per-vertex weight (V,) of the photometric term: face skin, without eyes and mouth interior."""
    r = model.regions
    base = r.get("face", r.get("skin"))
    m = torch.ones(model.n_vertices, dtype=torch.bool) if base is None else base.clone()
    for k in ("eyes", "eye_sockets", "mouth_interior", "eyelashes", "eye_shells", "teeth", "neck_scalp"):
        if k in r:
            m &= ~r[k]
    return m.float()


def fit(model: MorphableModel, targets: list[FitTarget], config: FitConfig | None = None, device: str = "cpu", progress: Progress | None = None) -> FitResult:
    """Fit ``model`` to B images given their landmarks (and pixels for the photometric stages).

    Returns a :class:`FitResult`. Raises FittingError if the optimisation produces non-finite values.
    """
    cfg = config or FitConfig()
    with single_thread(cfg.threads):
        return _fit(model, targets, cfg, device, progress)


def _fit(model: MorphableModel, targets: list[FitTarget], cfg: FitConfig, device: str, progress: Progress | None) -> FitResult:
    if not targets:
        raise BadInputError("fit: no targets given")
    torch.manual_seed(cfg.seed)
    dev = torch.device(device)
    model = model.to(dev)
    B = len(targets)
    S = 1 if cfg.share_identity else B
    p = _Params(model, B, S, dev)
    timings: dict[str, float] = {}
    stage_losses: dict[str, float] = {}
    t0 = time.perf_counter()

    primary, tgt_np, w_np, contour = landmark_plan(model, targets)
    n_primary = tgt_np.shape[1]
    sizes = [(t.width, t.height) for t in targets]
    _init_rigid(p, primary, tgt_np, w_np, sizes)
    gate = learned_gate(_learned_pose(p, targets, sizes), cfg.learned) if cfg.w_learned > 0 else np.zeros(len(targets))
    lm_set, tgt_np, w_np = add_learned_targets(targets, primary, tgt_np, w_np, cfg.w_learned * gate, cfg.learned)
    if lm_set != primary:  # the learned points take part: fade MediaPipe's on profiles, initialise again
        w_np = w_np.copy()
        w_np[:, :n_primary] *= (1.0 - cfg.learned.mediapipe_fade * gate)[:, None].astype(np.float32)
        _init_rigid(p, lm_set, tgt_np, w_np, sizes)
    tgt_t = torch.as_tensor(tgt_np, device=dev)
    lms = _Landmarks(lm_set, tgt_t, tgt_np, torch.as_tensor(w_np, device=dev), contour, sizes,
                     torch.tensor([float(s[0]) for s in sizes], device=dev), torch.tensor([float(s[1]) for s in sizes], device=dev),
                     face_scale(tgt_t))
    timings["init"] = time.perf_counter() - t0

    # ---- stage 1: landmarks
    t0 = time.perf_counter()
    geo = [p.shape_n, p.expression, p.pose, p.translation, p.log_focal]
    for t in geo:
        t.requires_grad_(True)
    ls = cfg.landmark_stage
    opt = Adam([([p.shape_n], cfg.lr * ls.lr_shape), ([p.expression], cfg.lr * ls.lr_expression), ([p.pose], cfg.lr * ls.lr_pose),
                ([p.translation], cfg.lr * ls.lr_translation), ([p.log_focal], cfg.lr * ls.lr_focal)])
    n = cfg.landmark_steps
    loss = 0.0
    sub = _subset(model, lm_set)
    for it in range(n):
        opt.scale = 1.0 if it < ls.first_drop_at * n else (ls.first_drop if it < ls.second_drop_at * n else ls.second_drop)
        opt.zero_grad()
        if model.is_articulated or p.pose.device.type != "cpu":
            R = axis_angle_to_matrix(p.pose)
            energy = _landmark_energy(p, cfg, lms, sub.landmarks(p.posed(sub, R)), R, intrinsics(p.log_focal.exp(), lms.W, lms.H))
            energy.backward()
            loss = float(energy.detach())
        else:
            loss = _landmark_step(p, cfg, lms, sub)
        opt.step()
        _project_bounds(p, cfg.photometric_stage)
        if progress:
            progress("landmarks", it + 1, n)
    _check_finite(p, "landmarks")
    stage_losses["landmarks"] = loss
    timings["landmarks"] = time.perf_counter() - t0

    have_images = all(t.image is not None for t in targets)
    if cfg.photometric and have_images and cfg.photometric_steps > 0:
        _photometric(p, cfg, targets, lms, stage_losses, timings, progress)
    for t in geo:
        t.requires_grad_(False)
    return FitResult(
        shape=p.shape.detach(), expression=p.expression.detach(), pose=p.pose.detach(),
        translation=p.translation.detach(), focal=p.log_focal.detach().exp(), albedo=p.albedo.detach(),
        albedo_gain=p.albedo_gain.detach(), albedo_smooth=p.albedo_smooth.detach(), sh=p.sh.detach(), landmark_set=primary,
        landmark_targets=lms.points[:, :n_primary],
        losses=stage_losses, timings=timings,
        learned_targets=lms.points[:, n_primary:] if lm_set != primary else None,
        learned_followed=torch.as_tensor(gate >= cfg.learned.report_gate) if lm_set != primary else None,
    )


def _project_bounds(p: _Params, st: PhotometricStage) -> None:
    with torch.no_grad():
        if p.bounded:
            p.expression.clamp_(0.0, 1.0)
        p.albedo_gain.clamp_(st.albedo_gain_min, st.albedo_gain_max)


def _check_finite(p: _Params, stage: str) -> None:
    for name in ("shape_n", "expression", "pose", "translation", "log_focal", "sh"):
        if not bool(torch.isfinite(getattr(p, name)).all()):
            raise FittingError(f"the '{stage}' stage diverged: non-finite {name}")


def _render(p: _Params, verts: Tensor, Kc: Tensor, size: int, albedo: Tensor, sh: Tensor | None, faces: Tensor):
    """Render the fitting region (triangles ``faces``) into the crops; no antialiasing (the
    silhouette is handled by the landmark term), so the backward pass stays cheap."""
    from face3d import renderers

    R = torch.eye(3, dtype=verts.dtype, device=verts.device).expand(p.B, 3, 3)
    cam = renderers.PerspectiveCamera(K=Kc, R=R, t=p.translation, width=size, height=size)
    return renderers.render_mesh(renderers.Mesh(verts, faces), cam, vertex_colors=albedo, sh=sh, background=0.0, antialias=False)


def _photometric(p: _Params, cfg: FitConfig, targets: list[FitTarget], lms: _Landmarks, stage_losses: dict[str, float],
                 timings: dict[str, float], progress: Progress | None) -> None:
    from face3d import renderers

    t0 = time.perf_counter()
    size = cfg.render_size
    dev = p.pose.device
    W, H = lms.W, lms.H
    lm68 = lms.points_np if lms.lm_set == "ibug68" else np.stack([_to68(t) for t in targets])
    st, ls = cfg.photometric_stage, cfg.lighting_stage
    boxes = _crop_boxes(lm68, lms.sizes, st.crop_scale)
    crops = _crop_images([t.image for t in targets], boxes, size, st.prefilter_above).to(dev)
    boxes_t = torch.as_tensor(boxes, device=dev)
    skin = []
    for b in range(p.B):
        lm_c = (lm68[b] - boxes[b, :2]) * (size / boxes[b, 2])
        skin.append(losses.skin_mask(crops[b].cpu().numpy(), lm_c, colour=cfg.skin_colour))
    skin_t = torch.as_tensor(np.stack(skin), device=dev)
    region = fitting_region(p.model).to(dev)
    fit_faces = p.model.faces[region[p.model.faces].min(1).values > 0.5]
    if fit_faces.shape[0] == 0:
        raise FittingError(f"model '{p.model.name}' has no triangles in its photometric fitting region")
    mirror = torch.as_tensor(priors.mirror_indices(p.model.template), device=dev)
    sub = _subset(p.model, lms.lm_set, fit_faces)  # render and landmarks read only these vertices

    # ---- stage 2: lighting and albedo colour in closed form (geometry fixed)
    with torch.no_grad():
        verts = p.posed(sub)
        Kc = crop_intrinsics(intrinsics(p.log_focal.exp(), W, H), boxes_t, size)
        alb = p.base_albedo()
        out = _render(p, verts, Kc, size, alb[:, sub.idx], None, sub.faces)
        mask = (out.alpha[..., 0] > ls.coverage).float() * skin_t
        basis = renderers.shading.sh_basis(out.normals)  # (B,H,W,9)
        for b in range(p.B):
            m = mask[b] > 0.5
            if int(m.sum()) < ls.min_pixels:
                p.sh[b] = renderers.shading.ambient_sh(1.0).to(p.sh).reshape(9, 3)
                continue
            A = basis[b][m] * 1.0  # (N,9)
            rows = []
            for c in range(3):
                Ac = A * out.albedo[b][m][:, c : c + 1]
                sol = _least_squares(Ac, crops[b][m][:, c])
                rows.append(sol)
            sh_c = torch.stack(rows, 1)  # (9,3)
            white = sh_c.mean(1, keepdim=True)
            gain = (sh_c[0] / white[0].clamp_min(1e-4)).clamp(ls.gain_min, ls.gain_max)
            p.sh[b] = white.expand(9, 3)
            if p.albedo_gain.shape[0] == p.B:
                p.albedo_gain[b] = p.albedo_gain[b] * gain
            elif b == 0:
                p.albedo_gain[0] = p.albedo_gain[0] * gain
    timings["lighting"] = time.perf_counter() - t0
    stage_losses["lighting"] = float(losses.photometric_loss(_shade(out, p), crops, mask, st.sigma).mean())

    # ---- stage 3: joint photometric refinement
    t0 = time.perf_counter()
    for t in (p.albedo_n, p.albedo_gain, p.sh, p.albedo_smooth):
        t.requires_grad_(True)
    opt = Adam([([p.shape_n], cfg.lr * st.lr_shape), ([p.expression], cfg.lr * st.lr_expression), ([p.pose], cfg.lr * st.lr_pose),
                ([p.translation], cfg.lr * st.lr_translation), ([p.log_focal], cfg.lr * st.lr_focal), ([p.albedo_n], cfg.lr * st.lr_albedo),
                ([p.albedo_smooth], cfg.lr * st.lr_albedo_smooth), ([p.albedo_gain, p.sh], cfg.lr * st.lr_lighting)])
    occl = torch.ones_like(mask)
    loss = torch.zeros(())
    n = cfg.photometric_steps
    lm_cfg = dataclasses.replace(cfg, w_landmark=cfg.w_landmark * cfg.photometric_landmark_scale,
                                 w_identity=cfg.w_identity * cfg.photometric_prior_scale,
                                 w_expression=cfg.w_expression * cfg.photometric_prior_scale)
    for it in range(n):
        opt.zero_grad()
        R = axis_angle_to_matrix(p.pose)
        verts = p.posed(sub, R)
        K = intrinsics(p.log_focal.exp(), W, H)
        lm_e = _landmark_energy(p, lm_cfg, lms, sub.landmarks(verts), R, K)
        Kc = crop_intrinsics(K, boxes_t, size)
        alb = p.base_albedo()
        out = _render(p, verts, Kc, size, alb[:, sub.idx], p.sh, sub.faces)
        wmask = out.alpha[..., 0].detach() * skin_t
        if it % st.occluder_every == 0:
            occl = losses.outlier_weights(out.image.detach(), crops, wmask.detach(), st.occluder_k)
        photo = losses.photometric_loss(out.image, crops, wmask * occl, st.sigma).sum()
        reg_e = cfg.w_albedo * priors.gaussian_prior(p.albedo_n).sum()
        reg_e = reg_e + cfg.w_albedo * priors.gaussian_prior(p.albedo_smooth.flatten(1) / smooth_albedo.PRIOR_STD).sum()
        reg_e = reg_e + cfg.w_symmetry * priors.albedo_symmetry(alb, mirror).sum()
        reg_e = reg_e + cfg.w_lighting * priors.sh_prior(p.sh).sum()
        loss = cfg.w_photometric * photo + lm_e + reg_e
        loss.backward()
        opt.step()
        _project_bounds(p, cfg.photometric_stage)
        if progress:
            progress("photometric", it + 1, n)
    _check_finite(p, "photometric")
    stage_losses["photometric"] = float(loss.detach())
    timings["photometric"] = time.perf_counter() - t0
    for t in (p.albedo_n, p.albedo_gain, p.sh, p.albedo_smooth):
        t.requires_grad_(False)


def _least_squares(A: Tensor, y: Tensor) -> Tensor:
    """argmin_x |A x - y|² for A (N, K), y (N,): normal equations in float64, returned as A's dtype.
    float32 LAPACK least squares gave results that differed between processes in the 8th digit
    (memory alignment), and the photometric stage amplified that to ~4e-3 in the fitted shape."""
    A64 = A.double()
    x = torch.linalg.solve(A64.T @ A64 + 1e-9 * torch.eye(A.shape[1], dtype=torch.float64, device=A.device), A64.T @ y.double())
    return x.to(A.dtype)


def _shade(out, p: _Params) -> Tensor:
    from face3d import renderers

    return out.albedo * renderers.shading.sh_shade(out.normals, p.sh)


def _to68(t: FitTarget) -> np.ndarray:
    if t.scheme == "ibug68":
        return t.landmarks[:, :2]
    from face3d.landmarks.mapping import mediapipe_to_ibug68

    return mediapipe_to_ibug68(np.asarray(t.landmarks, np.float64))[:, :2]


def texture_face_mask(model: MorphableModel) -> np.ndarray:
    """Triangles (F,) bool that own the face texture: all corners in the model's 'face' region
    (ICT: the face submesh, whose UVs fill the [0,1]² tile; eyeballs and back of the head, whose
    UVs overlap it or lie in other tiles, are excluded) and all UVs inside [0, 1]². A fresh copy
    of a mask kept per model while its faces, 'face' region and UVs are the same tensors,
    unchanged in place (a photo asks for it four times: texture, detail, overlay, GLB)."""
    src = (model.faces, model.regions.get("face"), model.uvs, model.uv_faces)
    return model_memo(model, "texture_face_mask", src, lambda: _texture_face_mask(model)).copy()


def _texture_face_mask(model: MorphableModel) -> np.ndarray:
    F_ = model.faces.shape[0]
    keep = np.ones(F_, bool)
    r = model.regions.get("face")
    if r is not None:
        keep &= r.numpy()[model.faces.numpy()].all(1)
    if model.uvs is not None and model.uv_faces is not None:
        uv = model.uvs.numpy()[model.uv_faces.numpy()]
        keep &= ((uv >= 0) & (uv <= 1)).all((1, 2))
    return keep
