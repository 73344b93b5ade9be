"""The 52 ARKit blendshapes of the ``basic`` head as displacement fields (metres at weight 1).

Semantics follow Apple's ARFaceAnchor.BlendShapeLocation descriptions; ``Left`` is the
subject's left (+X). Every ``...Right`` shape (and ``jawRight``/``mouthRight``) is the exact
mirror image (x -> -x through the mesh's mirror vertex map) of its ``Left`` partner.
``jawOpen`` rotates the jaw region by ``JAW_OPEN_ANGLE`` about a transverse hinge axis
(linearised: the shape is the displacement of the rotation at weight 1); ``mouthClose`` is
the corrective that closes the lips over an open jaw (valid together with ``jawOpen``).
"""

from __future__ import annotations

import numpy as np

from face3d.arkit import ARKIT_NAMES
from face3d.models.basic_build import anatomy as A
from face3d.models.basic_build.mesh import HeadMesh
from face3d.models.basic_build.shape import eye_margins, eye_opening, gauss, smoothstep

JAW_OPEN_ANGLE = 0.36  # radians (~21 deg; incisal opening ~ 35-40 mm)


def _absx(v: np.ndarray) -> np.ndarray:
    """Points folded onto the left side (|x|), for symmetric shapes."""
    return np.stack([np.abs(v[:, 0]), v[:, 1], v[:, 2]], 1)


def _ball(v: np.ndarray, c, r) -> np.ndarray:
    """Gaussian blob weight around centre c with radii r (scalar or per axis)."""
    return np.exp(-np.sum(((v - np.asarray(c)) / np.asarray(r)) ** 2, axis=1))


class _Ctx:
    """Per-vertex quantities shared by the shape definitions."""

    def __init__(self, hm: HeadMesh) -> None:
        v = hm.vertices
        self.v = v
        self.n = len(v)
        self.x, self.y, self.z = v[:, 0], v[:, 1], v[:, 2]
        na = len(hm.azimuth)
        row = np.full(self.n, -1)
        row[hm.grid_index] = np.arange(len(hm.elevation))[:, None].repeat(na, 1)
        below = (row >= 0) & (row < hm.mouth_row)
        below[hm.lower_lip_ids] = True
        pt = hm.pocket_t
        below |= (pt > 0.5) & (pt < 1)
        self.below = below
        self.pocket = (pt > 0) & (pt < 1)
        self.pocket_t = pt
        cx = A.CHEILION[0]
        self.lip_zone = (gauss(self.y - A.STOMION[1], 0.013) * smoothstep(cx + 0.012, cx - 0.004, np.abs(self.x))
                         * smoothstep(0.05, 0.08, self.z))
        self.lip_zone = np.maximum(self.lip_zone, self.pocket * smoothstep(cx + 0.01, cx - 0.004, np.abs(self.x)))
        self.upper = self.lip_zone * ~below
        self.lower = self.lip_zone * below
        self.jaw_w = self._jaw_weight()

    def _jaw_weight(self) -> np.ndarray:
        x, y, z = self.x, self.y, self.z
        ax = np.abs(x)
        c, h = A.CHEILION, A.JAW_HINGE
        slope = (c[1] - h[1]) / (c[2] - h[2])
        d = y - (c[1] + slope * (z - c[2]))
        w = smoothstep(0.004, -0.016, d) * smoothstep(-0.03, 0.02, z) * smoothstep(-0.17, -0.115, y)
        core = smoothstep(c[0] + 0.001, c[0] - 0.007, ax) * gauss(y - A.STOMION[1], 0.02) * smoothstep(0.06, 0.08, z)
        core = np.maximum(core, self.pocket * smoothstep(c[0] + 0.001, c[0] - 0.007, ax))
        return np.where(self.below, np.maximum(w, core), np.minimum(w, 1 - core))

    def vec(self, w: np.ndarray, d) -> np.ndarray:
        return w[:, None] * np.asarray(d, dtype=np.float64)[None, :]


def _jaw_rotation(ctx: _Ctx, angle: float) -> np.ndarray:
    p = ctx.v - A.JAW_HINGE
    c, s = np.cos(angle), np.sin(angle)
    q = np.stack([p[:, 0], c * p[:, 1] - s * p[:, 2], s * p[:, 1] + c * p[:, 2]], 1)
    return (q - p) * ctx.jaw_w[:, None]


def _eye_frame(ctx: _Ctx):
    """Left-eye local quantities: u, upper/lower margin y, opening weight, region gate."""
    u, up, lo = eye_margins(np.abs(ctx.x))
    side = smoothstep(0.004, 0.012, ctx.x) * smoothstep(0.05, 0.065, ctx.z)
    gate_u = smoothstep(1.45, 1.0, np.abs(u))
    opening = eye_opening(ctx.x, ctx.y) * side
    return u, up, lo, opening, side * gate_u


def _onto_lid_sphere(ctx: _Ctx, d: np.ndarray, w: np.ndarray, extra: float = 0.0024) -> np.ndarray:
    """Add the z offset that keeps displaced eye-area vertices on the lid surface."""
    c = A.EYE_CENTER
    p = ctx.v + d
    r = A.EYE_RADIUS + extra
    rr = r**2 - (p[:, 0] - c[0]) ** 2 - (p[:, 1] - c[1]) ** 2
    z_on = c[2] + np.sqrt(np.clip(rr, 0, None))
    dz = np.where(rr > 0, np.maximum(z_on - p[:, 2], 0.0), 0.0)
    d = d.copy()
    d[:, 2] += dz * w
    return d


def _eye_blink(ctx: _Ctx) -> np.ndarray:
    """Upper lid down onto a slightly raised lower lid; lid skin follows, fading toward the brow."""
    u, up, lo, opening, gate = _eye_frame(ctx)
    meet = lo + 0.15 * (up - lo)
    y = ctx.y
    dy = np.zeros(ctx.n)
    dy = np.where((y > meet) & (y <= up), -(y - meet), dy)
    dy = np.where(y > up, -(up - meet) * smoothstep(0.011, 0.0, y - up), dy)
    dy = np.where((y <= meet) & (y >= lo), meet - y, dy)
    dy = np.where(y < lo, (meet - lo) * smoothstep(0.006, 0.0, lo - y), dy)
    d = np.zeros((ctx.n, 3))
    d[:, 1] = dy * gate
    d = _onto_lid_sphere(ctx, d, gate * (y > meet))
    d[:, 2] -= 0.002 * eye_opening(ctx.x, y, inset=0.0002) * gate  # tuck the eyeball strip under the lids
    return d


def _eye_wide(ctx: _Ctx) -> np.ndarray:
    u, up, lo, opening, gate = _eye_frame(ctx)
    y = ctx.y
    lift = 0.0028 * np.sqrt(np.clip(1 - u**2, 0, 1))
    dy = np.where(y > lo, lift * np.clip((y - lo) / np.maximum(up - lo, 1e-4), 0, 1), 0.0)
    dy = np.where(y > up, lift * smoothstep(0.012, 0.0, y - up), dy)
    d = np.zeros((ctx.n, 3))
    d[:, 1] = dy * gate
    return d


def _eye_squint(ctx: _Ctx) -> np.ndarray:
    u, up, lo, opening, gate = _eye_frame(ctx)
    y = ctx.y
    raise_ = 0.35 * (up - lo)
    dy = np.where(y < up, raise_ * np.clip((up - y) / np.maximum(up - lo, 1e-4), 0, 1), 0.0)
    dy = np.where(y < lo, raise_ * smoothstep(0.012, 0.0, lo - y), dy)
    d = np.zeros((ctx.n, 3))
    d[:, 1] = dy * gate
    d += ctx.vec(_ball(ctx.v, [0.04, -0.004, 0.07], [0.014, 0.01, 0.03]), [0.0, 0.0015, 0.001])
    return d


def _eye_look(ctx: _Ctx, direction: tuple[float, float]) -> np.ndarray:
    """Iris shift for gaze (dx, dy) in metres (left eye), lids follow vertical gaze a little."""
    u, up, lo, opening, gate = _eye_frame(ctx)
    c = A.EYE_CENTER
    r = np.hypot(ctx.x - c[0], ctx.y - c[1])
    ball = opening * smoothstep(0.0105, 0.0085, r)  # keep the lid margins fixed
    d = ctx.vec(ball, [direction[0], direction[1], 0.0])
    lid = smoothstep(0.0, 0.003, ctx.y - up) * smoothstep(0.012, 0.002, ctx.y - up) * gate
    d += ctx.vec(lid, [0.0, 0.35 * direction[1], 0.0])
    return _onto_lid_sphere(ctx, d, ball, extra=0.0)  # the iris stays on the eyeball


def _left_shapes(ctx: _Ctx) -> dict[str, np.ndarray]:
    v, vec = ctx.v, ctx.vec
    cl = A.CHEILION
    corner = _ball(v, cl, [0.014, 0.013, 0.02])
    corner_wide = _ball(v, cl, [0.02, 0.018, 0.025])
    side = smoothstep(-0.006, 0.01, ctx.x)
    cheek = _ball(v, [0.038, -0.03, 0.08], [0.018, 0.018, 0.03])
    s: dict[str, np.ndarray] = {}
    s["eyeBlinkLeft"] = _eye_blink(ctx)
    s["eyeLookDownLeft"] = _eye_look(ctx, (0.0, -0.0032))
    s["eyeLookInLeft"] = _eye_look(ctx, (-0.0042, 0.0))
    s["eyeLookOutLeft"] = _eye_look(ctx, (0.0042, 0.0))
    s["eyeLookUpLeft"] = _eye_look(ctx, (0.0, 0.0030))
    s["eyeSquintLeft"] = _eye_squint(ctx)
    s["eyeWideLeft"] = _eye_wide(ctx)
    jaw = ctx.jaw_w
    s["jawLeft"] = vec(jaw, [0.010, 0.0, 0.0])
    s["mouthLeft"] = vec(_ball(v, [0.0, A.STOMION[1], 0.1], [0.035, 0.02, 0.05]) * smoothstep(0.05, 0.08, ctx.z), [0.009, 0.0, -0.001])
    s["mouthSmileLeft"] = vec(corner, [0.006, 0.009, -0.005]) + vec(cheek, [0.001, 0.004, 0.002])
    s["mouthFrownLeft"] = vec(corner, [0.001, -0.007, -0.001])
    s["mouthDimpleLeft"] = vec(corner, [0.004, 0.0, -0.005])
    s["mouthStretchLeft"] = vec(corner_wide, [0.007, -0.004, -0.003])
    s["mouthPressLeft"] = vec(ctx.upper * side, [0.0, -0.0012, -0.001]) + vec(ctx.lower * side, [0.0, 0.0015, -0.001])
    s["mouthLowerDownLeft"] = vec(ctx.lower * side, [0.0, -0.007, 0.001])
    s["mouthUpperUpLeft"] = vec(ctx.upper * side, [0.0, 0.006, 0.001])
    s["browDownLeft"] = vec(_ball(v, [0.03, 0.04, 0.09], [0.022, 0.012, 0.03]), [-0.002, -0.005, 0.001])
    s["browOuterUpLeft"] = vec(_ball(v, [0.047, 0.037, 0.08], [0.014, 0.014, 0.03]), [0.0, 0.007, 0.0])
    s["cheekSquintLeft"] = vec(_ball(v, [0.04, -0.006, 0.075], [0.016, 0.012, 0.03]), [0.0, 0.004, 0.001])
    s["noseSneerLeft"] = vec(_ball(v, [0.012, -0.02, 0.1], [0.01, 0.012, 0.03]), [0.001, 0.004, 0.001]) + vec(ctx.upper * side, [0.0, 0.002, 0.0])
    return s


def _mirror(d: np.ndarray, mirror: np.ndarray) -> np.ndarray:
    out = d[mirror].copy()
    out[:, 0] *= -1
    return out


def arkit_blendshapes(hm: HeadMesh) -> np.ndarray:
    """The 52 ARKit shapes (52, V, 3), metres at weight 1, in ``ARKIT_NAMES`` order."""
    ctx = _Ctx(hm)
    v, vec = ctx.v, ctx.vec
    left = _left_shapes(ctx)
    shapes: dict[str, np.ndarray] = dict(left)
    for name, d in left.items():
        shapes[name.replace("Left", "Right")] = _mirror(d, hm.mirror)
    shapes["jawOpen"] = _jaw_rotation(ctx, JAW_OPEN_ANGLE)
    shapes["jawForward"] = vec(ctx.jaw_w, [0.0, 0.0, 0.010])
    lips_close = np.clip(ctx.lower * 1.6, 0, 1)
    shapes["mouthClose"] = -shapes["jawOpen"] * lips_close[:, None]
    lz = ctx.lip_zone
    shapes["mouthFunnel"] = vec(lz, [0.0, 0.0, 0.008]) + np.stack([-0.3 * ctx.x * lz, np.zeros(ctx.n), np.zeros(ctx.n)], 1) \
        + vec(ctx.upper, [0.0, 0.002, 0.0]) + vec(ctx.lower, [0.0, -0.003, 0.0])
    shapes["mouthPucker"] = vec(lz, [0.0, 0.0, 0.010]) + np.stack([-0.45 * ctx.x * lz, np.zeros(ctx.n), np.zeros(ctx.n)], 1)
    shapes["mouthRollLower"] = vec(ctx.lower, [0.0, 0.002, -0.005])
    shapes["mouthRollUpper"] = vec(ctx.upper, [0.0, -0.002, -0.005])
    chin = _ball(v, [0.0, -0.085, 0.095], [0.02, 0.014, 0.03])
    shapes["mouthShrugLower"] = vec(np.clip(ctx.lower + chin, 0, 1), [0.0, 0.004, 0.002])
    shapes["mouthShrugUpper"] = vec(ctx.upper, [0.0, 0.003, 0.001])
    shapes["browInnerUp"] = vec(_ball(_absx(v), [0.016, 0.037, 0.095], [0.012, 0.012, 0.03]), [0.0, 0.008, 0.001])
    puff = _ball(_absx(v), [0.045, -0.045, 0.07], [0.02, 0.02, 0.03])
    shapes["cheekPuff"] = np.stack([np.sign(ctx.x) * 0.008 * puff, np.zeros(ctx.n), 0.004 * puff], 1)
    tongue = ctx.pocket * smoothstep(0.5, 0.8, ctx.pocket_t) * smoothstep(A.CHEILION[0], 0.0, np.abs(ctx.x))
    shapes["tongueOut"] = vec(tongue, [0.0, 0.002, 0.03]) + vec(ctx.lower, [0.0, -0.004, 0.0])
    missing = [n for n in ARKIT_NAMES if n not in shapes]
    if missing:
        raise RuntimeError(f"basic model: ARKit shapes not defined: {missing}")
    return np.stack([shapes[n] for n in ARKIT_NAMES])
