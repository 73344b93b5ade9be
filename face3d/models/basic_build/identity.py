"""Identity modes of the ``basic`` model: named, localised, smooth deformation fields.

Every mode is tied to one anthropometric measurement. Units of the raw coefficient:

* linear measurements: the basis vector is the displacement (metres) per **1 metre** change
  of the measurement (calibrated on the mean mesh between the two landmarks named in
  ``calib``), and ``id_std`` is the measurement's adult standard deviation in metres;
  modes without calibration landmarks (soft-tissue prominences, ear shape) are scaled to
  1 metre of *peak* vertex displacement per unit instead (``coefficient_unit`` in the meta);
* angular measurements: the basis vector is the displacement per **1 radian**, and ``id_std``
  is the standard deviation in radians.

So ``shape[k] = id_std[k]`` is a one-SD change of measurement k, and the prior is
``N(0, diag(id_std**2))`` as :class:`~face3d.models.model.MorphableModel` expects.

Sources of the figures (means and SDs, sex-pooled and rounded by us):
  [F] Farkas LG (ed.), *Anthropometry of the Head and Face*, 2nd ed., Raven Press, 1994,
      Appendix A, young adult (18-25 y) North American Caucasian norms (landmark codes eu,
      g, op, zy, go, n, gn, sn, prn, al, mf, en, ex, ps, pi, ch, ls, li, sto, sl, sa, sba,
      pra, pa, ft, tr, v, po as in that book).
  [C] Cephalometric soft-/hard-tissue angle norms as summarised in Farkas 1994, ch. 2
      (inclinations), the orthodontic literature (gonial angle ~ 120-125 deg, SD 5-7) and
      Hertel exophthalmometry of Caucasian adults (eye protrusion; sexes pooled, SD 2.5).
Modes marked ``[E]`` have no direct published norm for the deformation they model (soft
tissue fullness, prominences) or none we could check; their SD is an estimate of the same
order as the nearest measured quantity. Neck breadth and depth are ``[E]``: the U.S. Army
survey ANSUR II (2012) records neck circumferences only, not breadth or depth.
The ``[F]`` and ``[C]`` figures were written from memory of those sources; the book's tables
were not available to check them. Which figures have since been checked against which published
tables, and which were corrected: docs/basic_model_sources.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from face3d.models.basic_build import anatomy as A
from face3d.models.basic_build.shape import gauss, smoothstep


@dataclass(frozen=True)
class Measurement:
    """An anthropometric measurement: landmarks (Farkas notation), mean, SD, unit, source."""

    landmarks: str
    mean: float
    sd: float
    unit: str  # "mm" or "deg"
    source: str


Field = Callable[[np.ndarray], np.ndarray]


def _xyz(v: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    x, y, z = v[:, 0], v[:, 1], v[:, 2]
    return x, y, z, np.abs(x), np.sign(x)


def _vec(dx=0.0, dy=0.0, dz=0.0, n: int = 0) -> np.ndarray:
    out = np.zeros((n, 3))
    out[:, 0], out[:, 1], out[:, 2] = dx, dy, dz
    return out


def _front(z: np.ndarray) -> np.ndarray:
    return smoothstep(-0.03, 0.04, z)


def _neck_fade(y: np.ndarray) -> np.ndarray:
    return smoothstep(-0.18, -0.12, y)


def _eye_w(v: np.ndarray, sx: float = 0.014, sy: float = 0.011) -> np.ndarray:
    x, y, z, ax, _ = _xyz(v)
    return gauss(ax - A.EYE_CENTER[0], sx) * gauss(y - A.EYE_CENTER[1], sy) * smoothstep(0.04, 0.06, z)


def _mouth_w(v: np.ndarray) -> np.ndarray:
    x, y, z, ax, _ = _xyz(v)
    return gauss(x, 0.022) * gauss(y - A.STOMION[1], 0.012) * smoothstep(0.05, 0.08, z)


def _nose_w(v: np.ndarray, y0: float, y1: float, wx: float = 0.012) -> np.ndarray:
    x, y, z, ax, _ = _xyz(v)
    return gauss(x, wx) * smoothstep(y0 + 0.004, y0 - 0.004, y) * smoothstep(y1 - 0.004, y1 + 0.004, y) * smoothstep(0.085, 0.10, z)


def _ear_w(v: np.ndarray) -> np.ndarray:
    x, y, z, ax, _ = _xyz(v)
    q = np.stack([ax, y, z], 1)
    d = np.linalg.norm((q - A.EAR_CENTER) / np.array([0.03, 0.045, 0.032]), axis=1)
    return smoothstep(1.0, 0.6, d) * smoothstep(0.060, 0.070, ax)


def _lower_face(v: np.ndarray, y_top: float, y_bottom: float) -> np.ndarray:
    """0 above y_top rising to 1 at y_bottom (face side only, fading into the neck)."""
    x, y, z, ax, _ = _xyz(v)
    return smoothstep(y_top, y_bottom, y) * _front(z) * _neck_fade(y)


def _fields() -> list[tuple[str, Measurement, Field, tuple[np.ndarray, np.ndarray, int] | None]]:
    F, C, E = "[F]", "[C]", "[E]"
    modes: list[tuple[str, Measurement, Field, tuple[np.ndarray, np.ndarray, int] | None]] = []

    def add(name: str, m: Measurement, f: Field, calib: tuple[np.ndarray, np.ndarray, int] | None) -> None:
        modes.append((name, m, f, calib))

    def lr(p: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
        return (A.mirror(p), p, 0)

    # ---- cranium
    add("head_breadth", Measurement("eu-eu", 148.0, 6.0, "mm", F),
        lambda v: _vec(dx=v[:, 0] * smoothstep(-0.05, 0.02, v[:, 1]) * (1 - 0.7 * smoothstep(0.04, 0.08, v[:, 2])), n=len(v)),
        lr(A.EURION))
    add("head_length", Measurement("g-op", 192.0, 7.5, "mm", F),
        lambda v: _vec(dz=np.minimum(v[:, 2], 0.0) * smoothstep(-0.08, 0.0, v[:, 1]), n=len(v)),
        (np.array([0.0, 0.04, -0.096]), A.GLABELLA, 2))
    add("head_height", Measurement("v-po", 127.0, 6.0, "mm", F),
        lambda v: _vec(dy=np.maximum(v[:, 1], 0.0) * (1 - smoothstep(0.05, 0.1, v[:, 2]) * smoothstep(0.07, 0.03, v[:, 1])), n=len(v)),
        (A.TRAGION, np.array([0.0, 0.126, -0.006]), 1))
    add("forehead_height", Measurement("tr-n", 61.0, 6.5, "mm", F),
        lambda v: _vec(dy=smoothstep(0.03, A.HAIRLINE_Y, v[:, 1]) * smoothstep(0.0, 0.06, v[:, 2]), n=len(v)),
        (A.NASION, np.array([0.0, A.HAIRLINE_Y, 0.088]), 1))
    add("forehead_width", Measurement("ft-ft", 111.0, 5.0, "mm", F),
        lambda v: _vec(dx=v[:, 0] * gauss(v[:, 1] - 0.055, 0.025) * smoothstep(0.0, 0.05, v[:, 2]), n=len(v)),
        (np.array([-0.052, 0.05, 0.07]), np.array([0.052, 0.05, 0.07]), 0))
    add("forehead_inclination", Measurement("forehead inclination (g-tr to vertical)", -11.0, 5.5, "deg", F),
        lambda v: _vec(dz=-np.maximum(v[:, 1] - 0.04, 0.0) * smoothstep(0.02, 0.07, v[:, 2]) * smoothstep(0.13, 0.09, v[:, 1]), n=len(v)),
        None)
    add("brow_ridge", Measurement("[E] glabella/supraorbital soft-tissue prominence", 0.0, 2.0, "mm", E),
        lambda v: _vec(dz=gauss(v[:, 1] - 0.040, 0.009) * np.exp(-((v[:, 0] / 0.05) ** 4)) * smoothstep(0.06, 0.085, v[:, 2]), n=len(v)),
        (np.array([0.0, 0.04, 0.05]), A.GLABELLA, 2))
    add("brow_height", Measurement("[E] brow position above the eye fissure (ps-brow)", 0.0, 2.5, "mm", E),
        lambda v: _vec(dy=gauss(v[:, 1] - A.BROW_PEAK[1], 0.008) * gauss(np.abs(v[:, 0]) - 0.033, 0.02) * smoothstep(0.05, 0.07, v[:, 2]), n=len(v)),
        (A.EYE_CENTER + [0, 0, 0.012], A.BROW_PEAK, 1))
    # ---- face frame
    add("face_width", Measurement("zy-zy", 133.0, 6.0, "mm", F),
        lambda v: _vec(dx=v[:, 0] * gauss(v[:, 1], 0.035) * smoothstep(-0.04, 0.02, v[:, 2]), n=len(v)),
        lr(A.ZYGION))
    add("face_height", Measurement("n-gn", 117.0, 7.0, "mm", F),
        lambda v: _vec(dy=-_lower_face(v, A.NASION[1], A.MENTON[1]), n=len(v)),
        (A.MENTON, A.NASION, 1))
    add("lower_face_height", Measurement("sn-gn", 69.0, 5.0, "mm", F),
        lambda v: _vec(dy=-_lower_face(v, A.SUBNASALE[1], A.MENTON[1]), n=len(v)),
        (A.MENTON, A.SUBNASALE, 1))
    add("mandible_width", Measurement("go-go", 95.0, 6.0, "mm", F),
        lambda v: _vec(dx=v[:, 0] * gauss(v[:, 1] - A.GONION[1], 0.03) * gauss(v[:, 2] - 0.01, 0.05) * smoothstep(-0.2, -0.11, v[:, 1]), n=len(v)),
        lr(A.GONION))
    add("gonial_angle", Measurement("gonial angle (ramus-body)", 122.0, 6.0, "deg", C),
        lambda v: _vec(dy=0.04 * gauss(np.linalg.norm((np.stack([np.abs(v[:, 0]), v[:, 1], v[:, 2]], 1) - A.GONION) / [0.04, 0.025, 0.03], axis=1), 1.0),
                       dz=0.02 * gauss(np.linalg.norm((np.stack([np.abs(v[:, 0]), v[:, 1], v[:, 2]], 1) - A.GONION) / [0.04, 0.025, 0.03], axis=1), 1.0), n=len(v)),
        None)
    add("chin_height", Measurement("sl-gn", 19.0, 3.0, "mm", F),
        lambda v: _vec(dy=-_lower_face(v, A.SUBLABIALE[1], A.MENTON[1]) * gauss(v[:, 0], 0.04), n=len(v)),
        (A.MENTON, A.SUBLABIALE, 1))
    add("chin_protrusion", Measurement("[E] soft-tissue pogonion sagittal position (sn-pg')", 0.0, 3.0, "mm", E),
        lambda v: _vec(dz=gauss(v[:, 0], 0.022) * gauss(v[:, 1] - A.POGONION[1], 0.013) * smoothstep(0.03, 0.07, v[:, 2]), n=len(v)),
        (np.array([0.0, A.POGONION[1], 0.0]), A.POGONION, 2))
    add("chin_width", Measurement("[E] chin breadth (mental tubercles)", 0.0, 3.0, "mm", E),
        lambda v: _vec(dx=v[:, 0] * gauss(v[:, 1] - A.POGONION[1], 0.012) * smoothstep(0.06, 0.08, v[:, 2]) * gauss(v[:, 0], 0.025), n=len(v)),
        (np.array([-0.012, A.POGONION[1], 0.095]), np.array([0.012, A.POGONION[1], 0.095]), 0))
    add("mandible_depth", Measurement("t-gn (lower face depth)", 127.0, 6.5, "mm", F),
        lambda v: _vec(dz=_lower_face(v, -0.01, -0.06) * smoothstep(-0.03, 0.08, v[:, 2]), n=len(v)),
        (A.TRAGION, A.POGONION, 2))
    add("midface_depth", Measurement("t-sn (middle face depth)", 118.0, 5.5, "mm", F),
        lambda v: _vec(dz=gauss(v[:, 1] - A.SUBNASALE[1], 0.025) * gauss(v[:, 0], 0.04) * smoothstep(0.0, 0.08, v[:, 2]), n=len(v)),
        (A.TRAGION, A.SUBNASALE, 2))
    add("upper_face_depth", Measurement("t-n (upper face depth)", 110.0, 5.0, "mm", F),
        lambda v: _vec(dz=gauss(v[:, 1] - A.NASION[1], 0.03) * gauss(v[:, 0], 0.045) * smoothstep(0.0, 0.08, v[:, 2]), n=len(v)),
        (A.TRAGION, A.NASION, 2))
    add("cheekbone_prominence", Measurement("[E] malar soft-tissue prominence", 0.0, 2.5, "mm", E),
        lambda v: _vec(dx=0.6 * np.sign(v[:, 0]) * gauss(np.abs(v[:, 0]) - 0.05, 0.014) * gauss(v[:, 1] + 0.004, 0.014) * smoothstep(0.0, 0.04, v[:, 2]),
                       dz=gauss(np.abs(v[:, 0]) - 0.05, 0.014) * gauss(v[:, 1] + 0.004, 0.014) * smoothstep(0.0, 0.04, v[:, 2]), n=len(v)),
        None)
    add("cheek_fullness", Measurement("[E] buccal soft-tissue thickness", 0.0, 3.0, "mm", E),
        lambda v: _vec(dx=np.sign(v[:, 0]) * gauss(np.abs(v[:, 0]) - 0.045, 0.016) * gauss(v[:, 1] + 0.045, 0.02) * smoothstep(0.0, 0.05, v[:, 2]), n=len(v)),
        None)
    add("temple_hollowness", Measurement("[E] temporal fossa depth", 0.0, 2.0, "mm", E),
        lambda v: _vec(dx=-np.sign(v[:, 0]) * gauss(np.abs(v[:, 0]) - 0.066, 0.012) * gauss(v[:, 1] - 0.035, 0.018) * gauss(v[:, 2] - 0.04, 0.02), n=len(v)),
        None)
    # ---- nose
    add("nose_height", Measurement("n-sn", 52.0, 3.5, "mm", F),
        lambda v: _vec(dy=-(smoothstep(A.NASION[1], A.SUBNASALE[1], v[:, 1]) * (1 - smoothstep(A.SUBNASALE[1], A.STOMION[1], v[:, 1]))) * gauss(v[:, 0], 0.022) * smoothstep(0.07, 0.09, v[:, 2]), n=len(v)),
        (A.SUBNASALE, A.NASION, 1))
    add("nose_width", Measurement("al-al", 33.0, 2.5, "mm", F),
        lambda v: _vec(dx=v[:, 0] / (2 * A.ALARE[0]) * gauss(v[:, 1] + 0.030, 0.010) * gauss(v[:, 0], 0.02) * smoothstep(0.085, 0.1, v[:, 2]), n=len(v)),
        lr(A.ALARE))
    add("nose_tip_protrusion", Measurement("sn-prn", 20.0, 2.0, "mm", F),
        lambda v: _vec(dz=gauss(v[:, 0], 0.011) * gauss(v[:, 1] - A.PRONASALE[1], 0.011) * smoothstep(0.10, 0.115, v[:, 2]), n=len(v)),
        (A.SUBNASALE, A.PRONASALE, 2))
    add("nose_length", Measurement("n-prn", 48.0, 3.5, "mm", F),
        lambda v: _vec(dy=-0.83, dz=0.56, n=len(v)) * (_nose_w(v, A.NASION[1], -0.045, 0.014)
                                                        * smoothstep(A.NASION[1], A.PRONASALE[1], v[:, 1])
                                                        * smoothstep(-0.046, A.PRONASALE[1], v[:, 1]))[:, None],
        (A.NASION, A.PRONASALE, -1))
    add("nose_bridge_height", Measurement("[E] nasal dorsum height at mid-bridge", 0.0, 2.0, "mm", E),
        lambda v: _vec(dz=_nose_w(v, 0.026, -0.015, 0.009) * gauss(v[:, 1] - 0.005, 0.015), n=len(v)),
        (np.array([0.0, 0.005, 0.0]), np.array([0.0, 0.005, 0.106]), 2))
    add("nose_root_width", Measurement("mf-mf", 18.5, 2.0, "mm", F),
        lambda v: _vec(dx=v[:, 0] * gauss(v[:, 1] - 0.02, 0.01) * gauss(v[:, 0], 0.014) * smoothstep(0.07, 0.09, v[:, 2]), n=len(v)),
        (np.array([-0.009, 0.02, 0.09]), np.array([0.009, 0.02, 0.09]), 0))
    add("nose_tip_rotation", Measurement("nasolabial angle (cm-sn-ls)", 102.0, 9.0, "deg", C),
        lambda v: _vec(dy=0.02 * gauss(v[:, 0], 0.012) * gauss(v[:, 1] + 0.03, 0.009) * smoothstep(0.095, 0.11, v[:, 2]), n=len(v)),
        None)
    add("nose_tip_width", Measurement("[E] nasal tip breadth", 0.0, 1.5, "mm", E),
        lambda v: _vec(dx=v[:, 0] * gauss(v[:, 1] - A.PRONASALE[1], 0.008) * gauss(v[:, 0], 0.01) * smoothstep(0.1, 0.115, v[:, 2]), n=len(v)),
        None)
    add("nostril_flare", Measurement("[E] alar curvature (ac-ac minus al-al)", 0.0, 1.5, "mm", E),
        lambda v: _vec(dx=np.sign(v[:, 0]) * gauss(np.abs(v[:, 0]) - 0.016, 0.004) * gauss(v[:, 1] + 0.034, 0.004), dz=0.5 * gauss(np.abs(v[:, 0]) - 0.016, 0.004) * gauss(v[:, 1] + 0.034, 0.004), n=len(v)),
        None)
    # ---- eyes
    add("eye_spacing", Measurement("en-en", 32.0, 2.5, "mm", F),
        lambda v: _vec(dx=0.5 * np.sign(v[:, 0]) * _eye_w(v), n=len(v)),
        lr(A.ENDOCANTHION))
    add("eye_width", Measurement("ex-en", 30.5, 1.5, "mm", F),
        lambda v: _vec(dx=np.sign(v[:, 0]) * (np.abs(v[:, 0]) - A.EYE_CENTER[0]) / 0.0285 * _eye_w(v, 0.016, 0.010), n=len(v)),
        (A.ENDOCANTHION, A.EXOCANTHION, 0))
    add("eye_height", Measurement("ps-pi", 10.5, 1.0, "mm", F),
        lambda v: _vec(dy=(v[:, 1] - A.EYE_CENTER[1]) / 0.0104 * _eye_w(v, 0.012, 0.007), n=len(v)),
        (np.array([0.031, 0.0105, 0.0835]), np.array([0.031, 0.0205, 0.0835]), 1))
    add("eye_tilt", Measurement("inclination of the eye fissure (en-ex)", 4.0, 3.0, "deg", F),
        lambda v: _vec(dy=(np.abs(v[:, 0]) - A.EYE_CENTER[0]) * _eye_w(v, 0.016, 0.010), n=len(v)),
        None)
    add("eye_height_position", Measurement("[E] vertical position of the eyes (en to n height)", 0.0, 2.0, "mm", E),
        lambda v: _vec(dy=_eye_w(v, 0.018, 0.012), n=len(v)),
        None)
    add("eye_protrusion", Measurement("exophthalmometry (lateral orbital rim to cornea)", 16.5, 2.5, "mm", C),
        lambda v: _vec(dz=_eye_w(v, 0.011, 0.009), n=len(v)),
        (A.EXOCANTHION - [0, 0, 0.02], A.EYE_CENTER + [0, 0, A.EYE_RADIUS], 2))
    add("eye_size", Measurement("ex-ex (biocular width)", 89.5, 3.5, "mm", F),
        lambda v: _vec(dx=v[:, 0] / 0.09 * _eye_w(v, 0.02, 0.014), dy=(v[:, 1] - A.EYE_CENTER[1]) / 0.09 * _eye_w(v, 0.02, 0.014), n=len(v)),
        lr(A.EXOCANTHION))
    # ---- mouth and lips
    add("mouth_width", Measurement("ch-ch", 52.0, 3.5, "mm", F),
        lambda v: _vec(dx=v[:, 0] / (2 * A.CHEILION[0]) * gauss(v[:, 1] - A.STOMION[1], 0.014) * gauss(v[:, 0], 0.035) * smoothstep(0.05, 0.08, v[:, 2]), n=len(v)),
        lr(A.CHEILION))
    add("upper_lip_height", Measurement("sn-sto", 21.0, 2.2, "mm", F),
        lambda v: _vec(dy=-_lower_face(v, A.SUBNASALE[1] - 0.003, A.STOMION[1]) * (1 - _lower_face(v, A.STOMION[1] - 0.01, A.MENTON[1] - 0.02)) * gauss(v[:, 0], 0.06), n=len(v)),
        (A.STOMION, A.SUBNASALE, 1))
    add("upper_vermilion_height", Measurement("ls-sto", 8.5, 1.6, "mm", F),
        lambda v: _vec(dy=smoothstep(A.STOMION[1], A.LABIALE_SUP[1], v[:, 1]) * gauss(v[:, 1] - A.LABIALE_SUP[1], 0.008) * _mouth_w(v) / np.maximum(_mouth_w(v).max(), 1e-9),
                       dz=0.5 * gauss(v[:, 1] - A.LABIALE_SUP[1], 0.004) * _mouth_w(v) / np.maximum(_mouth_w(v).max(), 1e-9), n=len(v)),
        None)
    add("lower_vermilion_height", Measurement("sto-li", 9.5, 1.7, "mm", F),
        lambda v: _vec(dy=-smoothstep(A.STOMION[1], A.LABIALE_INF[1], v[:, 1]) * gauss(v[:, 1] - A.LABIALE_INF[1], 0.008) * _mouth_w(v) / np.maximum(_mouth_w(v).max(), 1e-9),
                       dz=0.5 * gauss(v[:, 1] - A.LABIALE_INF[1], 0.004) * _mouth_w(v) / np.maximum(_mouth_w(v).max(), 1e-9), n=len(v)),
        None)
    add("lip_protrusion", Measurement("[E] lip projection to the sn-pg' line", 0.0, 2.0, "mm", E),
        lambda v: _vec(dz=_mouth_w(v) / np.maximum(_mouth_w(v).max(), 1e-9), n=len(v)),
        (np.array([0.0, A.STOMION[1], 0.0]), A.LABIALE_SUP, 2))
    add("philtrum_depth", Measurement("[E] philtral groove depth", 0.0, 1.0, "mm", E),
        lambda v: _vec(dz=-gauss(v[:, 0], 0.003) * gauss(v[:, 1] + 0.045, 0.006) * smoothstep(0.095, 0.105, v[:, 2]), n=len(v)),
        None)
    add("mouth_corner_height", Measurement("[E] cheilion height relative to stomion", 0.0, 1.5, "mm", E),
        lambda v: _vec(dy=gauss(np.abs(v[:, 0]) - A.CHEILION[0], 0.006) * gauss(v[:, 1] - A.CHEILION[1], 0.008) * smoothstep(0.07, 0.09, v[:, 2]), n=len(v)),
        None)
    # ---- ears and neck
    add("ear_length", Measurement("sa-sba", 61.0, 4.0, "mm", F),
        lambda v: _vec(dy=(v[:, 1] - A.EAR_CENTER[1]) / 0.062 * _ear_w(v), n=len(v)),
        None)
    add("ear_width", Measurement("pra-pa", 33.0, 2.6, "mm", F),
        lambda v: _vec(dz=(v[:, 2] - A.EAR_CENTER[2]) / 0.034 * _ear_w(v), n=len(v)),
        None)
    add("ear_protrusion", Measurement("auricle protrusion (helix to scalp)", 19.0, 4.0, "mm", F),
        lambda v: _vec(dx=np.sign(v[:, 0]) * _ear_w(v) * smoothstep(-0.005, -0.03, v[:, 2] - A.EAR_CENTER[2]), n=len(v)),
        None)
    add("ear_position", Measurement("[E] vertical position of the ear (sa to ex height)", 0.0, 3.0, "mm", E),
        lambda v: _vec(dy=_ear_w(v), n=len(v)),
        None)
    add("neck_breadth", Measurement("[E] neck breadth", 108.0, 9.0, "mm", E),
        lambda v: _vec(dx=v[:, 0] / 0.112 * smoothstep(-0.07, -0.12, v[:, 1]), n=len(v)),
        (np.array([-0.056, -0.15, -0.014]), np.array([0.056, -0.15, -0.014]), 0))
    add("neck_depth", Measurement("[E] neck depth", 112.0, 9.0, "mm", E),
        lambda v: _vec(dz=(v[:, 2] + 0.014) / 0.108 * smoothstep(-0.07, -0.12, v[:, 1]), n=len(v)),
        (np.array([0.0, -0.15, -0.068]), np.array([0.0, -0.15, 0.04]), 2))
    return modes


def coefficient_unit(m: Measurement, calibrated: bool) -> str:
    """What one unit of a mode's raw coefficient means."""
    if m.unit == "deg":
        return "rad"
    return "m of measurement" if calibrated else "m of peak displacement"


def _nearest(v: np.ndarray, p: np.ndarray) -> int:
    return int(np.argmin(np.linalg.norm(v - p, axis=1)))


def identity_modes(
    v: np.ndarray, exclude: np.ndarray | None = None
) -> tuple[list[str], np.ndarray, np.ndarray, list[tuple[Measurement, str]]]:
    """(names, basis (K,V,3) per raw unit, std (K,), [(measurement, coefficient unit)]) for
    template vertices v (V,3).

    ``exclude`` (V,) bool marks vertices never used as calibration landmarks (mouth pocket).
    """
    names, basis, std, meas, units = [], [], [], [], []
    cand = np.arange(len(v)) if exclude is None else np.nonzero(~exclude)[0]
    for name, m, field, calib in _fields():
        d = np.asarray(field(v), dtype=np.float64)
        if calib is not None:
            pa, pb, axis = calib
            ia, ib = cand[_nearest(v[cand], pa)], cand[_nearest(v[cand], pb)]
            if axis < 0:  # Euclidean distance
                e = (v[ib] - v[ia]) / np.linalg.norm(v[ib] - v[ia])
                rate = float((d[ib] - d[ia]) @ e)
            else:
                rate = float(d[ib, axis] - d[ia, axis])
            d = d / rate
        else:
            d = d / max(np.abs(d).max(), 1e-12) if m.unit == "mm" else d
        names.append(name)
        units.append(coefficient_unit(m, calib is not None))
        basis.append(d)
        std.append(m.sd * (1e-3 if m.unit == "mm" else np.pi / 180.0))
        meas.append(m)
    return names, np.stack(basis), np.asarray(std), list(zip(meas, units))
