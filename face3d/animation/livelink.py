"""Live Link Face CSV (Epic's iPhone app) and plain ARKit-weight CSV, both ways.

Live Link Face ("mocap CSV") layout, one row per captured frame::

    Timecode,BlendShapeCount,EyeBlinkLeft,...,TongueOut,HeadYaw,HeadPitch,HeadRoll,
    LeftEyeYaw,LeftEyePitch,LeftEyeRoll,RightEyeYaw,RightEyePitch,RightEyeRoll
    00:00:00:00.000,61,0.0123,...

Names are the ARKit names in PascalCase; the order is ARKit's except that the app writes
``JawRight`` before ``JawLeft`` and ``MouthRight`` before ``MouthLeft`` (``LIVELINK_COLUMNS``).
``BlendShapeCount`` is 61 (52 shapes + 9 rotations). ``Timecode`` is ``HH:MM:SS:FF.fff``: FF is
the frame within the second at the take's frame rate and ``.fff`` a sub-frame fraction.
Rotations are written and read here as radians (head: yaw about +Y, pitch about +X, roll about
+Z, applied as R = Ry(yaw) Rx(pitch) Rz(roll)); eyes likewise.

Plain CSV: a header ``time,<ARKit names...>`` (camelCase, any subset and order; matched
case-insensitively), ``time`` in seconds; without a ``time`` column rows are frames at ``fps``.
"""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

import numpy as np

from face3d.animation.animation import Animation
from face3d.arkit import ARKIT_INDEX, ARKIT_NAMES
from face3d.errors import BadInputError, FileFormatError

_SWAPPED = {"jawLeft": "jawRight", "jawRight": "jawLeft", "mouthLeft": "mouthRight", "mouthRight": "mouthLeft"}
LIVELINK_SHAPES: tuple[str, ...] = tuple(_SWAPPED.get(n, n) for n in ARKIT_NAMES)
ROTATIONS: tuple[str, ...] = ("HeadYaw", "HeadPitch", "HeadRoll", "LeftEyeYaw", "LeftEyePitch", "LeftEyeRoll",
                              "RightEyeYaw", "RightEyePitch", "RightEyeRoll")
LIVELINK_COLUMNS: tuple[str, ...] = ("Timecode", "BlendShapeCount") + tuple(n[0].upper() + n[1:] for n in LIVELINK_SHAPES) + ROTATIONS
_LOWER = {n.lower(): n for n in ARKIT_NAMES}
_TC = re.compile(r"^(\d+):(\d\d):(\d\d)[:;](\d+)(?:\.(\d+))?$")
_STD_RATES = (24.0, 25.0, 30.0, 48.0, 50.0, 60.0, 120.0)


def _rot(axis: int, a: np.ndarray) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    R = np.zeros(a.shape + (3, 3))
    i, j = [(1, 2), (2, 0), (0, 1)][axis]
    R[..., axis, axis] = 1
    R[..., i, i] = c
    R[..., j, j] = c
    R[..., i, j] = -s
    R[..., j, i] = s
    return R


def ypr_to_axis_angle(ypr: np.ndarray) -> np.ndarray:
    """(T, 3) yaw, pitch, roll radians -> (T, 3) axis-angle of Ry(yaw) Rx(pitch) Rz(roll)."""
    from scipy.spatial.transform import Rotation

    R = _rot(1, ypr[:, 0]) @ _rot(0, ypr[:, 1]) @ _rot(2, ypr[:, 2])
    return Rotation.from_matrix(R).as_rotvec().astype(np.float32)


def axis_angle_to_ypr(aa: np.ndarray) -> np.ndarray:
    """Inverse of :func:`ypr_to_axis_angle` (intrinsic Y-X-Z Euler angles), (T, 3) radians."""
    from scipy.spatial.transform import Rotation

    return Rotation.from_rotvec(np.asarray(aa, np.float64)).as_euler("YXZ").astype(np.float32)


def parse_timecode(tc: str, fps: float) -> float:
    """Seconds of a ``HH:MM:SS:FF[.fff]`` timecode at ``fps``."""
    m = _TC.match(tc.strip())
    if not m:
        raise BadInputError(f"bad timecode '{tc}' (expected HH:MM:SS:FF.fff)")
    h, mi, s, f = (int(x) for x in m.groups()[:4])
    sub = float("0." + m.group(5)) if m.group(5) else 0.0
    return h * 3600 + mi * 60 + s + (f + sub) / fps


def format_timecode(t: float, fps: float) -> str:
    """``HH:MM:SS:FF.fff`` for time ``t`` seconds at ``fps`` (FF = frame within the second)."""
    whole = int(np.floor(t + 1e-9))
    frac_frames = (t - whole) * fps
    f = int(np.floor(frac_frames + 1e-6))
    sub = max(frac_frames - f, 0.0)
    h, rem = divmod(whole, 3600)
    mi, s = divmod(rem, 60)
    return f"{h:02d}:{mi:02d}:{s:02d}:{f:02d}.{int(round(sub * 1000)) % 1000:03d}"


def _read_rows(path: Path) -> list[list[str]]:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise FileFormatError(path, "file not found") from None
    except UnicodeDecodeError:
        raise FileFormatError(path, "not a text CSV file (bad UTF-8)") from None
    rows = [r for r in csv.reader(io.StringIO(text)) if r and any(c.strip() for c in r)]
    if len(rows) < 2:
        raise FileFormatError(path, "CSV needs a header and at least one data row")
    return rows


def _floats(path: Path, rows: list[list[str]], cols: list[int], names: list[str]) -> np.ndarray:
    out = np.zeros((len(rows), len(cols)), np.float32)
    for i, r in enumerate(rows):
        for k, c in enumerate(cols):
            try:
                out[i, k] = float(r[c])
            except (IndexError, ValueError):
                cell = r[c] if c < len(r) else "<missing>"
                raise FileFormatError(path, f"row {i + 2}, column '{names[k]}': not a number ({cell!r})") from None
    if not np.all(np.isfinite(out)):
        raise FileFormatError(path, "non-finite value in the table")
    return out


def read_csv(path: str | Path, fps: float | None = None) -> Animation:
    """Animation from a Live Link Face CSV or a plain ARKit CSV (detected from the header).

    Live Link: ``fps`` defaults to the rate implied by the timecodes (largest FF + 1 snapped to a
    standard rate, else 60, the app's default). Plain: ``fps`` from the ``time`` column, else the
    argument (default 30).
    """
    p = Path(path)
    rows = _read_rows(p)
    header = [h.strip() for h in rows[0]]
    body = rows[1:]
    lower = [h.lower() for h in header]
    if "timecode" in lower and "blendshapecount" in lower:
        return _read_livelink(p, header, body, fps)
    shape_cols = [(i, _LOWER[h]) for i, h in enumerate(lower) if h in _LOWER]
    if not shape_cols:
        raise FileFormatError(p, "no ARKit blendshape columns in the header (expected e.g. 'jawOpen')")
    known = set(_LOWER) | {"time", "frame", "timecode"} | {r.lower() for r in ROTATIONS}
    unknown = [h for h in header if h.lower() not in known]
    if unknown:
        raise FileFormatError(p, f"unknown columns {unknown[:5]}")
    w = np.zeros((len(body), 52), np.float32)
    vals = _floats(p, body, [i for i, _ in shape_cols], [n for _, n in shape_cols])
    w[:, [ARKIT_INDEX[n] for _, n in shape_cols]] = vals
    rate = fps
    if "time" in lower:
        t = _floats(p, body, [lower.index("time")], ["time"])[:, 0]
        dt = np.diff(t)
        if dt.size and (np.any(dt <= 0)):
            raise FileFormatError(p, "'time' column is not strictly increasing")
        if rate is None:
            rate = 1.0 / float(np.median(dt)) if dt.size else 30.0
            if abs(rate - round(rate)) < 1e-2 * rate:
                rate = float(round(rate))
    return Animation(fps=rate or 30.0, arkit=w, meta={"source": str(p), "format": "arkit-csv"})


def _read_livelink(p: Path, header: list[str], body: list[list[str]], fps: float | None) -> Animation:
    lower = [h.lower() for h in header]
    missing = [n for n in LIVELINK_COLUMNS[2:54] if n.lower() not in lower]
    if missing:
        raise FileFormatError(p, f"Live Link Face CSV lacks columns {missing[:5]}{' ...' if len(missing) > 5 else ''}")
    tcs = [r[lower.index("timecode")] if r else "" for r in body]
    frames = []
    for i, tc in enumerate(tcs):
        m = _TC.match(tc.strip())
        if not m:
            raise FileFormatError(p, f"row {i + 2}: bad Timecode {tc!r} (expected HH:MM:SS:FF.fff)")
        frames.append(int(m.group(4)))
    if fps is None:
        top = max(frames) + 1
        fps = next((r for r in _STD_RATES if r >= top), 60.0) if len(body) > 1 else 60.0
    t = np.array([parse_timecode(tc, fps) for tc in tcs])
    if np.any(np.diff(t) < 0):
        raise FileFormatError(p, "Timecode goes backwards")
    w = np.zeros((len(body), 52), np.float32)
    shape_names = list(LIVELINK_SHAPES)
    cols = [lower.index(n.lower()) for n in shape_names]
    w[:, [ARKIT_INDEX[n] for n in shape_names]] = _floats(p, body, cols, shape_names)
    kw = {}
    if all(r.lower() in lower for r in ROTATIONS):
        rot = _floats(p, body, [lower.index(r.lower()) for r in ROTATIONS], list(ROTATIONS))
        kw["head_pose"] = ypr_to_axis_angle(rot[:, 0:3])
        kw["eyes"] = np.concatenate([ypr_to_axis_angle(rot[:, 3:6]), ypr_to_axis_angle(rot[:, 6:9])], 1)
    meta = {"source": str(p), "format": "livelink-face", "timecode_start": tcs[0].strip(), "start_time": float(t[0])}
    return Animation(fps=fps, arkit=w, meta=meta, **kw)


def write_livelink_csv(anim: Animation, path: str | Path, start_time: float = 0.0) -> Path:
    """Write ``anim`` (needs ARKit weights) as a Live Link Face CSV, atomically."""
    from face3d.io.atomic import atomic_open

    if anim.arkit is None:
        raise BadInputError("write_livelink_csv: the animation has no ARKit weights (retarget it first)")
    T = anim.n_frames
    head = axis_angle_to_ypr(anim.head_pose) if anim.head_pose is not None else np.zeros((T, 3), np.float32)
    if anim.eyes is not None:
        eyes = np.concatenate([axis_angle_to_ypr(anim.eyes[:, :3]), axis_angle_to_ypr(anim.eyes[:, 3:])], 1)
    else:
        eyes = np.zeros((T, 6), np.float32)
    cols = [ARKIT_INDEX[n] for n in LIVELINK_SHAPES]
    with atomic_open(path, "w", encoding="utf-8", newline="") as fh:
        wr = csv.writer(fh, lineterminator="\n")
        wr.writerow(LIVELINK_COLUMNS)
        for i in range(T):
            tc = format_timecode(start_time + i / anim.fps, anim.fps)
            vals = [f"{v:.6f}" for v in anim.arkit[i, cols]] + [f"{v:.6f}" for v in head[i]] + [f"{v:.6f}" for v in eyes[i]]
            wr.writerow([tc, len(ROTATIONS) + 52, *vals])
    return Path(path)


def write_arkit_csv(anim: Animation, path: str | Path) -> Path:
    """Write the plain CSV: ``time`` (s) and the 52 ARKit weights in ``ARKIT_NAMES`` order, atomically."""
    from face3d.io.atomic import atomic_open

    if anim.arkit is None:
        raise BadInputError("write_arkit_csv: the animation has no ARKit weights (retarget it first)")
    with atomic_open(path, "w", encoding="utf-8", newline="") as fh:
        wr = csv.writer(fh, lineterminator="\n")
        wr.writerow(["time", *ARKIT_NAMES])
        for i in range(anim.n_frames):
            wr.writerow([f"{i / anim.fps:.6f}", *(f"{v:.6f}" for v in anim.arkit[i])])
    return Path(path)
