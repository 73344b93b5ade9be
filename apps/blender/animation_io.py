"""Shape-key animation files read with the standard library only (no bpy, no face3d).

Each reader returns a :class:`Track`: sample times (seconds), a frame rate, and one weight per
sample for each shape-key name. Formats:

* face3d animation JSON (``"format": "face3d-animation"``): ``fps``, ``arkit_names``, ``arkit`` (T, 52), ``audio``;
* face3d animation NPZ (``Animation.save("talk.npz")``): ``header_json`` (the JSON's fields but the
  arrays) and ``arkit.npy`` (T, 52), read with ``zipfile`` and a small ``.npy`` parser;
* Live Link Face CSV: ``Timecode`` (``HH:MM:SS:FF.sss``, ``;`` for drop-frame, FF at the take's rate),
  ``BlendShapeCount``, then one column per ARKit shape (``EyeBlinkLeft``...; head/eye rotation
  columns are kept too and simply match no shape key);
* GLB: the first animation channel with path ``weights`` (morph-target weights), the mesh's
  ``extras.targetNames`` naming the targets (glTF 2.0, embedded buffer, float accessors);
  the audio path from ``scenes[0].extras`` or ``asset.extras``.

``Track.audio`` is the sound file as written (face3d writes it relative to the animation file);
:meth:`Track.audio_file` resolves it.
"""

from __future__ import annotations

import ast
import csv
import json
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path

_COMMON_RATES = (23.976, 24.0, 25.0, 29.97, 30.0, 48.0, 50.0, 59.94, 60.0, 90.0, 100.0, 120.0, 240.0)


class AnimationFileError(ValueError):
    """An animation file cannot be read; the message names the file and the problem."""


@dataclass
class Track:
    """``values[i][k]`` is the weight of ``names[k]`` at ``times[i]`` seconds; ``fps`` the sample rate;
    ``audio`` the sound file as written in the animation (None when there is none)."""

    fps: float
    names: list[str]
    times: list[float]
    values: list[list[float]]
    audio: str | None = None
    source: str | None = None

    def audio_file(self) -> Path | None:
        """The existing sound file of this track: ``audio`` as is when absolute, else relative to
        the animation file's folder (then to the working directory); None when absent."""
        if not self.audio:
            return None
        p = Path(self.audio)
        if p.is_absolute():
            candidates = [p]
        else:
            candidates = ([Path(self.source).parent / p] if self.source else []) + [p]
        return next((c.resolve() for c in candidates if c.is_file()), None)

    def frame_of(self, i: int, start: int = 1) -> int:
        """The scene frame of sample ``i`` when the scene runs at ``fps`` and sample 0 is at ``start``."""
        return start + round((self.times[i] - self.times[0]) * self.fps)

    def column(self, name: str) -> list[float]:
        k = self.names.index(name)
        return [row[k] for row in self.values]


def read_track(path: str | Path, fallback_fps: float = 60.0) -> Track:
    """Read a face3d ``.json`` or ``.npz``, a Live Link Face ``.csv`` or a ``.glb`` (by suffix)."""
    p = Path(path)
    if not p.is_file():
        raise AnimationFileError(f"{p}: file not found")
    suffix = p.suffix.lower()
    readers = {".json": read_face3d_json, ".npz": read_face3d_npz, ".glb": read_glb_weights}
    if suffix == ".csv":
        track = read_livelink_csv(p, fallback_fps)
    elif suffix in readers:
        track = readers[suffix](p)
    else:
        raise AnimationFileError(f"{p}: unknown animation format '{p.suffix}' (use .json, .npz, .csv or .glb)")
    track.source = str(p)
    return track


def read_face3d_json(path: Path) -> Track:
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise AnimationFileError(f"{path}: invalid JSON ({exc})") from None
    return _face3d_track(path, d)


_NPY_TYPES = {"<f4": "f", "<f8": "d", "<i4": "i", "<i8": "q"}


def read_npy(path: Path, name: str, data: bytes) -> tuple[tuple[int, ...], list]:
    """A little-endian float/int or unicode ``.npy`` array as (shape, flat values), without numpy."""
    if data[:6] != b"\x93NUMPY":
        raise AnimationFileError(f"{path}: {name} is not a .npy array")
    major = data[6]
    hlen_size = 2 if major == 1 else 4
    hlen = int.from_bytes(data[8:8 + hlen_size], "little")
    start = 8 + hlen_size + hlen
    try:
        header = ast.literal_eval(data[8 + hlen_size:start].decode("latin1"))
        descr, shape = header["descr"], tuple(header["shape"])
    except (ValueError, SyntaxError, KeyError, TypeError):
        raise AnimationFileError(f"{path}: {name} has an unreadable .npy header") from None
    if header.get("fortran_order"):
        raise AnimationFileError(f"{path}: {name} is Fortran-ordered (not written by face3d)")
    count = 1
    for n in shape:
        count *= n
    if descr.startswith("<U"):
        width = int(descr[2:])
        raw = data[start:start + 4 * width * count].decode("utf-32-le")
        return shape, [raw[i * width:(i + 1) * width].rstrip("\0") for i in range(count)]
    if descr not in _NPY_TYPES:
        raise AnimationFileError(f"{path}: {name} has dtype {descr}, expected float32/float64")
    fmt = _NPY_TYPES[descr]
    size = struct.calcsize(fmt)
    if len(data) < start + size * count:
        raise AnimationFileError(f"{path}: {name} is truncated")
    return shape, list(struct.unpack_from(f"<{count}{fmt}", data, start))


def read_face3d_npz(path: Path) -> Track:
    """A face3d animation ``.npz`` (``Animation.save``): its ``header_json`` plus the ``arkit`` table."""
    try:
        with zipfile.ZipFile(path) as z:
            members = {n.removesuffix(".npy"): z.read(n) for n in z.namelist() if n in ("header_json.npy", "arkit.npy")}
    except (zipfile.BadZipFile, OSError) as exc:
        raise AnimationFileError(f"{path}: not a readable .npz ({exc})") from None
    if "header_json" not in members:
        raise AnimationFileError(f"{path}: not a face3d animation (no header_json in the .npz)")
    try:
        d = json.loads(read_npy(path, "header_json", members["header_json"])[1][0])
    except (json.JSONDecodeError, IndexError):
        raise AnimationFileError(f"{path}: header_json is not JSON") from None
    if not isinstance(d, dict):
        raise AnimationFileError(f"{path}: header_json is not a JSON object")
    if "arkit" in members:
        shape, flat = read_npy(path, "arkit", members["arkit"])
        if len(shape) != 2:
            raise AnimationFileError(f"{path}: arkit has shape {shape}, expected (frames, 52)")
        d["arkit"] = [flat[i * shape[1]:(i + 1) * shape[1]] for i in range(shape[0])]
    return _face3d_track(path, d)


def _face3d_track(path: Path, d: object) -> Track:
    if not isinstance(d, dict) or d.get("format") != "face3d-animation":
        raise AnimationFileError(f"{path}: not a face3d animation (missing \"format\": \"face3d-animation\")")
    fps, names, rows = d.get("fps"), d.get("arkit_names"), d.get("arkit")
    if not isinstance(fps, (int, float)) or fps <= 0:
        raise AnimationFileError(f"{path}: 'fps' must be a positive number, got {fps!r}")
    if not isinstance(names, list) or not isinstance(rows, list) or not rows:
        raise AnimationFileError(f"{path}: needs 'arkit_names' and a non-empty 'arkit' table (ARKit weights)")
    values = []
    for i, row in enumerate(rows):
        if not isinstance(row, list) or len(row) != len(names):
            raise AnimationFileError(f"{path}: arkit row {i} has {len(row) if isinstance(row, list) else '?'} "
                                     f"values, expected {len(names)}")
        values.append([float(v) for v in row])
    audio = d.get("audio")
    return Track(float(fps), [str(n) for n in names], [i / float(fps) for i in range(len(values))], values,
                 audio=str(audio) if audio else None)


def _timecode_parts(tc: str) -> tuple[int, int, int, float]:
    hh, mm, ss, ff = tc.strip().replace(";", ":").split(":")
    return int(hh), int(mm), int(ss), float(ff)


def read_livelink_csv(path: Path, fallback_fps: float = 60.0) -> Track:
    """Live Link Face CSV; the rate is inferred from the frame field of the timecodes."""
    with open(path, newline="", encoding="utf-8-sig") as fh:
        rows = list(csv.reader(fh))
    if not rows or not rows[0] or rows[0][0].strip().lower() != "timecode":
        raise AnimationFileError(f"{path}: not a Live Link Face CSV (first column must be 'Timecode')")
    header = [h.strip() for h in rows[0]]
    skip = {0} | {i for i, h in enumerate(header) if h.lower() == "blendshapecount"}
    cols = [i for i in range(len(header)) if i not in skip]
    names = [header[i][:1].lower() + header[i][1:] for i in cols]
    stamps, values = [], []
    for lineno, row in enumerate(rows[1:], start=2):
        if not row or not any(c.strip() for c in row):
            continue
        try:
            stamps.append(_timecode_parts(row[0]))
            values.append([float(row[i]) for i in cols])
        except (ValueError, IndexError):
            raise AnimationFileError(f"{path}: line {lineno}: bad timecode or value") from None
    if not values:
        raise AnimationFileError(f"{path}: no frames")
    fps = fallback_fps
    if len({s[:3] for s in stamps}) > 1:
        top = max(int(s[3]) for s in stamps) + 1
        fps = min(_COMMON_RATES, key=lambda r: abs(r - top))
    rate = round(fps)
    times = [h * 3600 + m * 60 + s + f / rate for h, m, s, f in stamps]
    return Track(float(fps), names, times, values)


_COMPONENTS = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4}


def _glb_chunks(path: Path) -> tuple[dict, bytes]:
    data = path.read_bytes()
    if len(data) < 20 or data[:4] != b"glTF":
        raise AnimationFileError(f"{path}: not a binary glTF (.glb) file")
    off, doc, binary = 12, None, b""
    while off + 8 <= len(data):
        length, kind = struct.unpack_from("<II", data, off)
        chunk = data[off + 8: off + 8 + length]
        if kind == 0x4E4F534A:
            doc = json.loads(chunk.decode("utf-8"))
        elif kind == 0x004E4942:
            binary = chunk
        off += 8 + length
    if doc is None:
        raise AnimationFileError(f"{path}: GLB without a JSON chunk")
    return doc, binary


def _accessor_floats(path: Path, doc: dict, binary: bytes, index: int) -> list[float]:
    acc = doc["accessors"][index]
    if acc.get("componentType") != 5126 or "sparse" in acc:
        raise AnimationFileError(f"{path}: accessor {index} is not a dense float32 accessor")
    view = doc["bufferViews"][acc["bufferView"]]
    if view.get("buffer", 0) != 0 or "uri" in doc["buffers"][0]:
        raise AnimationFileError(f"{path}: only GLBs with an embedded buffer are supported")
    width = _COMPONENTS[acc["type"]]
    stride = view.get("byteStride", 4 * width)
    start = view.get("byteOffset", 0) + acc.get("byteOffset", 0)
    out: list[float] = []
    for i in range(acc["count"]):
        out.extend(struct.unpack_from(f"<{width}f", binary, start + i * stride))
    return out


def read_glb_weights(path: Path) -> Track:
    """The first morph-weight animation channel of a GLB, with its mesh's target names."""
    doc, binary = _glb_chunks(path)
    for anim in doc.get("animations", []):
        for ch in anim.get("channels", []):
            target = ch.get("target", {})
            if target.get("path") != "weights" or "node" not in target:
                continue
            node = doc["nodes"][target["node"]]
            mesh = doc["meshes"][node["mesh"]]
            names = (mesh.get("extras") or {}).get("targetNames")
            n_targets = len(mesh["primitives"][0].get("targets", []))
            if not names or len(names) != n_targets:
                raise AnimationFileError(f"{path}: mesh '{mesh.get('name', node['mesh'])}' has no "
                                         f"extras.targetNames for its {n_targets} morph targets")
            sampler = anim["samplers"][ch["sampler"]]
            times = _accessor_floats(path, doc, binary, sampler["input"])
            flat = _accessor_floats(path, doc, binary, sampler["output"])
            k = n_targets
            if sampler.get("interpolation") == "CUBICSPLINE":
                rows = [flat[(3 * i + 1) * k:(3 * i + 2) * k] for i in range(len(times))]
            else:
                rows = [flat[i * k:(i + 1) * k] for i in range(len(times))]
            fps = _rate(times)
            extras = [(doc.get("scenes") or [{}])[0].get("extras") or {}, (doc.get("asset") or {}).get("extras") or {}]
            audio = next((e["audio"] for e in extras if isinstance(e, dict) and e.get("audio")), None)
            return Track(fps, [str(n) for n in names], times, rows, audio=str(audio) if audio else None)
    raise AnimationFileError(f"{path}: no morph-target weight animation in this GLB")


def _rate(times: list[float]) -> float:
    """Sample rate of (nearly) uniform times, snapped to a common rate when within 0.5 %."""
    if len(times) < 2:
        return 30.0
    dts = sorted(b - a for a, b in zip(times, times[1:]))
    raw = 1.0 / max(dts[len(dts) // 2], 1e-6)
    best = min(_COMMON_RATES, key=lambda r: abs(r - raw))
    return best if abs(best - raw) <= 0.005 * raw else raw
