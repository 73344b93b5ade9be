"""Mesh files: OBJ (+MTL +PNG textures), binary PLY and textured GLB; a loader for all three.

Conventions (``docs/conventions.md``): metres, +Y up, +Z toward the viewer; these match glTF,
so GLB positions are written unchanged. Mesh UVs follow OBJ (v = 0 at the bottom of the texture
image, images stored row 0 at the top); glTF puts v = 0 at the top, so :func:`save_glb` writes
``(u, 1 - v)`` and :func:`load_mesh` flips them back. glTF has a single index buffer, so
vertices are split where one position carries several UVs (seams).

Every file is written atomically (``face3d.io.atomic``). Unreadable or corrupt files raise
``face3d.errors.FileFormatError`` naming the path.
"""

from __future__ import annotations

import dataclasses
import io
import os
import threading
import weakref
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np
from numpy.typing import ArrayLike

from face3d.errors import BadInputError, FileFormatError, ShapeError
from face3d.io.array_cache import ContentMemo
from face3d.io.atomic import write_bytes, write_text
from face3d.io.imagefile import load_png, png_bytes, png_channels

if TYPE_CHECKING:
    import pygltflib

#: An (H, W, 3) image array in [0, 1] (or uint8), the path of a PNG file to copy, or the future bytes of
#: a PNG being encoded (:func:`face3d.io.imagefile.png_future`; every writer takes the same encoding).
TextureLike = ArrayLike | str | os.PathLike[str] | Future[bytes]


@dataclass
class LoadedMesh:
    """A mesh read from disk. vertices (V,3) float64 metres; faces (F,3) int64;
    uvs (T,2) and uv_faces (F,3) when present (OBJ convention, v up); colors (V,3) in [0,1];
    texture / normal_map (H,W,C) float32 in [0,1] when the file references/embeds them;
    GLB morph targets: morph_names (K,), morph_deltas (K,V,3) metres, morph_weights (K,) resting weights."""

    vertices: np.ndarray
    faces: np.ndarray
    uvs: np.ndarray | None = None
    uv_faces: np.ndarray | None = None
    colors: np.ndarray | None = None
    normals: np.ndarray | None = None
    texture: np.ndarray | None = None
    normal_map: np.ndarray | None = None
    morph_names: list[str] | None = None
    morph_deltas: np.ndarray | None = None
    morph_weights: np.ndarray | None = None


# --------------------------------------------------------------------------- checks
def _np(a: ArrayLike) -> np.ndarray:
    """``a`` as a numpy array (a torch tensor is detached and copied to the CPU first)."""
    detach = getattr(a, "detach", None)
    if detach is not None:
        a = detach().cpu().numpy()
    return np.asarray(a)


def _check_mesh(vertices: ArrayLike, faces: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    v = _np(vertices).astype(np.float64, copy=False)
    f = _np(faces)
    if v.ndim == 3 and v.shape[0] == 1:
        v = v[0]
    if v.ndim != 2 or v.shape[1] != 3:
        raise ShapeError("vertices", "(V, 3) array", v.shape)
    if f.ndim != 2 or f.shape[1] != 3 or not np.issubdtype(f.dtype, np.integer):
        raise ShapeError("faces", "(F, 3) integer array", f"{f.shape} {f.dtype}")
    f = f.astype(np.int64, copy=False)
    if f.size and (f.min() < 0 or f.max() >= len(v)):
        raise BadInputError(f"argument 'faces': indices outside [0, {len(v)})")
    if not np.all(np.isfinite(v)):
        raise BadInputError("argument 'vertices': contains NaN or infinite values")
    return v, f


def _check_uvs(uvs: ArrayLike, uv_faces: ArrayLike, n_faces: int) -> tuple[np.ndarray, np.ndarray]:
    t = _np(uvs).astype(np.float64, copy=False)
    tf = _np(uv_faces)
    if t.ndim != 2 or t.shape[1] != 2:
        raise ShapeError("uvs", "(T, 2) array", t.shape)
    if tf.ndim != 2 or tf.shape != (n_faces, 3) or not np.issubdtype(tf.dtype, np.integer):
        raise ShapeError("uv_faces", f"({n_faces}, 3) integer array", f"{tf.shape} {tf.dtype}")
    tf = tf.astype(np.int64, copy=False)
    if tf.size and (tf.min() < 0 or tf.max() >= len(t)):
        raise BadInputError(f"argument 'uv_faces': indices outside [0, {len(t)})")
    return t, tf


def _check_colors(colors: ArrayLike, n: int, name: str) -> np.ndarray:
    c = _np(colors)
    if c.ndim != 2 or c.shape[0] != n or c.shape[1] not in (3, 4):
        raise ShapeError(name, f"({n}, 3) colours", c.shape)
    if c.dtype == np.uint8:
        return c[:, :3].astype(np.float64) / 255.0
    return np.clip(c[:, :3].astype(np.float64), 0.0, 1.0)


def vertex_normals_np(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Area-weighted unit vertex normals (V, 3) of a triangle mesh (counter-clockwise = front)."""
    tri = vertices[faces]
    fn = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    n = corner_sums(faces, fn, vertices)
    length = np.linalg.norm(n, axis=1, keepdims=True)
    out = np.where(length > 1e-20, n / np.maximum(length, 1e-20), 0.0)
    out[length[:, 0] <= 1e-20] = (0.0, 0.0, 1.0)
    return out


def corner_sums(faces: np.ndarray, values: np.ndarray, like: np.ndarray) -> np.ndarray:
    """Per-vertex sums of per-face values: faces (F,3), values (F,C) -> an array like ``like``
    (V,C) where every corner of face i adds ``values[i]`` to its vertex. The additions come in the
    order of ``np.add.at`` over corners 0, 1, 2 (each in face order), so the sums are the same to
    the bit; float64 ones by ``np.bincount`` (~5x faster)."""
    if like.dtype != np.float64 or values.dtype != np.float64:
        out = np.zeros_like(like)
        for k in range(3):
            np.add.at(out, faces[:, k], values)
        return out
    idx = np.ascontiguousarray(faces.T).reshape(-1)  # corner 0 of every face, then corner 1, then corner 2
    out = np.empty_like(like)
    for c in range(values.shape[1]):
        out[:, c] = np.bincount(idx, weights=np.tile(values[:, c], 3), minlength=len(like))
    return out


# --------------------------------------------------------------------------- OBJ
def _texture_file(texture: TextureLike, folder: Path, default_name: str) -> str:
    """Write/copy a texture next to the OBJ and return its file name."""
    if isinstance(texture, (str, os.PathLike)):
        src = Path(texture)
        if not src.is_file():
            raise BadInputError(f"texture file not found: {src}")
        if src.resolve().parent != folder.resolve():
            write_bytes(folder / src.name, src.read_bytes())
        return src.name
    write_bytes(folder / default_name, texture.result() if isinstance(texture, Future) else png_bytes(texture, "texture"))
    return default_name


@dataclass(frozen=True)
class Material:
    """How a written mesh is coloured: ``texture`` (albedo) and ``normal_map`` (tangent space, OpenGL
    convention) over the mesh's UVs, each an (H, W, 3) image in [0, 1] (or uint8), a PNG path (to
    copy, for an OBJ) or a PNG being encoded (:data:`TextureLike`); ``vertex_colors`` (V, 3) in [0, 1]; ``name`` of the material; the file names
    an OBJ writes the images under."""

    texture: TextureLike | None = None
    normal_map: TextureLike | None = None
    vertex_colors: ArrayLike | None = None
    name: str = "face3d_material"
    texture_file: str = "albedo.png"
    normal_file: str = "normal.png"


def save_obj(path: str | os.PathLike[str], vertices: ArrayLike, faces: ArrayLike, uvs: ArrayLike | None = None,
             uv_faces: ArrayLike | None = None, material: Material | None = None) -> Path:
    """Write a Wavefront OBJ (+ ``.mtl`` and PNG textures when the material has a texture or normal map).

    vertices (V,3) metres; faces (F,3); uvs (T,2) OBJ convention with uv_faces (F,3); ``material``
    (:class:`Material`): a texture / normal map path is copied next to the OBJ, an array written as
    ``texture_file`` / ``normal_file``; the normal map is referenced by ``norm`` and ``map_Bump``
    (tangent space, OpenGL convention); vertex colours are written as ``v x y z r g b``. Returns the OBJ path.
    """
    mat = material or Material()
    texture, normal_map, vertex_colors, material_name = mat.texture, mat.normal_map, mat.vertex_colors, mat.name
    dest = Path(path)
    v, f = _check_mesh(vertices, faces)
    has_uv = uvs is not None or uv_faces is not None
    if has_uv:
        if uvs is None or uv_faces is None:
            raise BadInputError("save_obj: give both 'uvs' and 'uv_faces' or neither")
        t, tf = _check_uvs(uvs, uv_faces, len(f))
    if (texture is not None or normal_map is not None) and not has_uv:
        raise BadInputError("save_obj: a texture or normal map needs 'uvs' and 'uv_faces'")
    colors = _check_colors(vertex_colors, len(v), "vertex_colors") if vertex_colors is not None else None

    # the text first: PNGs the caller started encoding on a thread (imagefile.png_future) finish meanwhile
    body = [_rows(np.hstack([v, colors]), "v %.8g %.8g %.8g %.6g %.6g %.6g") if colors is not None else _rows(v, "v %.8g %.8g %.8g")]
    if has_uv:
        body += [_layout_rows((t,), "vt %.8g %.8g"), _layout_rows((f, tf), "f %d/%d %d/%d %d/%d")]
    else:
        body.append(_layout_rows((f,), "f %d %d %d"))
    lines: list[str] = ["# face3d OBJ (metres, +Y up)"]
    if texture is not None or normal_map is not None:
        folder = dest.parent
        folder.mkdir(parents=True, exist_ok=True)
        mtl = [f"newmtl {material_name}", "Ka 1.0 1.0 1.0", "Kd 1.0 1.0 1.0", "Ks 0.0 0.0 0.0", "d 1.0", "illum 1"]
        if texture is not None:
            mtl.append(f"map_Kd {_texture_file(texture, folder, mat.texture_file)}")
        if normal_map is not None:
            name = _texture_file(normal_map, folder, mat.normal_file)
            mtl += [f"norm {name}", f"map_Bump {name}"]
        mtl_name = dest.with_suffix(".mtl").name
        write_text(folder / mtl_name, "\n".join(mtl) + "\n")
        lines += [f"mtllib {mtl_name}", f"usemtl {material_name}"]
    write_text(dest, "\n".join(lines) + "\n" + "".join(body))
    return dest


def _rows(array: np.ndarray, fmt: str) -> str:
    """The lines ``np.savetxt(array, fmt=fmt)`` writes (each ending in a newline), ~2.5x faster:
    one ``%`` over all rows' values instead of one per row."""
    return ((fmt + "\n") * len(array)) % tuple(array.ravel().tolist()) if len(array) else ""


_ROWS_MEMO: ContentMemo[str] = ContentMemo(4)


def _layout_rows(arrays: tuple[np.ndarray, ...], fmt: str) -> str:
    """:func:`_rows` of the UV rows ``(uvs,)`` or of the face rows ``(faces,)`` / ``(faces, uv_faces)``
    (0-based, written 1-based and interleaved), remembered by content: a model's layout is the same
    for every photo, only its vertices change."""
    key = ContentMemo.key(arrays, fmt)
    hit = _ROWS_MEMO.get(key, arrays)
    if hit is not None:
        return hit
    rows = arrays[0] if arrays[0].dtype.kind == "f" else np.stack([a + 1 for a in arrays], axis=2).reshape(len(arrays[0]), -1)
    return _ROWS_MEMO.put(key, arrays, _rows(rows, fmt))


def _load_obj(path: Path) -> LoadedMesh:
    verts: list[list[float]] = []
    cols: list[list[float]] = []
    tex: list[list[float]] = []
    faces: list[list[int]] = []
    tfaces: list[list[int]] = []
    mtllib: str | None = None
    try:
        text = path.read_text(encoding="utf-8", errors="strict")
    except UnicodeDecodeError:
        raise FileFormatError(path, "not a text OBJ file") from None
    try:
        for lineno, line in enumerate(text.splitlines(), 1):
            parts = line.split()
            if not parts or parts[0].startswith("#"):
                continue
            key = parts[0]
            if key == "v":
                verts.append([float(x) for x in parts[1:4]])
                if len(parts) >= 7:
                    cols.append([float(x) for x in parts[4:7]])
            elif key == "vt":
                tex.append([float(x) for x in parts[1:3]])
            elif key == "f":
                corners = [c.split("/") for c in parts[1:]]
                if len(corners) < 3:
                    raise ValueError("face with fewer than 3 corners")
                vi = [int(c[0]) for c in corners]
                ti = [int(c[1]) if len(c) > 1 and c[1] else 0 for c in corners]
                for k in range(1, len(corners) - 1):
                    faces.append([vi[0], vi[k], vi[k + 1]])
                    tfaces.append([ti[0], ti[k], ti[k + 1]])
            elif key == "mtllib":
                mtllib = line.split(None, 1)[1].strip()
    except (ValueError, IndexError) as e:
        raise FileFormatError(path, f"malformed OBJ line {lineno} ({e})") from None
    if not verts or not faces:
        raise FileFormatError(path, "OBJ has no vertices or no faces")
    v = np.asarray(verts, np.float64)
    f = np.asarray(faces, np.int64)
    f = np.where(f < 0, f + len(v), f - 1)
    if f.min() < 0 or f.max() >= len(v):
        raise FileFormatError(path, "OBJ face indices out of range")
    out = LoadedMesh(v, f)
    if len(cols) == len(verts):
        out.colors = np.asarray(cols, np.float64)
    tf = np.asarray(tfaces, np.int64)
    if tex and np.all(tf != 0):
        t = np.asarray(tex, np.float64)
        tf = np.where(tf < 0, tf + len(t), tf - 1)
        if tf.min() < 0 or tf.max() >= len(t):
            raise FileFormatError(path, "OBJ texture indices out of range")
        out.uvs, out.uv_faces = t, tf
    if mtllib is not None and (path.parent / mtllib).is_file():
        for line in (path.parent / mtllib).read_text(encoding="utf-8", errors="replace").splitlines():
            parts = line.split(None, 1)
            if len(parts) == 2 and (path.parent / parts[1].strip()).is_file():
                if parts[0] == "map_Kd":
                    out.texture = load_png(path.parent / parts[1].strip())
                elif parts[0] == "norm":
                    out.normal_map = load_png(path.parent / parts[1].strip())
    return out


# --------------------------------------------------------------------------- PLY
def save_ply(path: str | os.PathLike[str], vertices: ArrayLike, faces: ArrayLike, colors: ArrayLike | None = None) -> Path:
    """Write a binary little-endian PLY: float32 positions (metres), optional uchar RGB colours
    (colors (V,3) float in [0,1] or uint8), uchar/int32 face lists."""
    v, f = _check_mesh(vertices, faces)
    c = _check_colors(colors, len(v), "colors") if colors is not None else None
    vt = [("x", "<f4"), ("y", "<f4"), ("z", "<f4")]
    if c is not None:
        vt += [("red", "u1"), ("green", "u1"), ("blue", "u1")]
    vrec = np.empty(len(v), dtype=vt)
    vrec["x"], vrec["y"], vrec["z"] = v[:, 0], v[:, 1], v[:, 2]
    if c is not None:
        c8 = np.round(c * 255).astype(np.uint8)
        vrec["red"], vrec["green"], vrec["blue"] = c8[:, 0], c8[:, 1], c8[:, 2]
    frec = np.empty(len(f), dtype=[("n", "u1"), ("i", "<i4", (3,))])
    frec["n"] = 3
    frec["i"] = f
    header = ["ply", "format binary_little_endian 1.0", "comment face3d (metres, +Y up)", f"element vertex {len(v)}"]
    header += ["property float x", "property float y", "property float z"]
    if c is not None:
        header += ["property uchar red", "property uchar green", "property uchar blue"]
    header += [f"element face {len(f)}", "property list uchar int vertex_indices", "end_header"]
    data = ("\n".join(header) + "\n").encode("ascii") + vrec.tobytes() + frec.tobytes()
    return write_bytes(path, data)


def _load_ply(path: Path) -> LoadedMesh:
    import trimesh

    try:
        m = trimesh.load(path, file_type="ply", process=False, force="mesh")
        if not isinstance(m, trimesh.Trimesh):
            raise FileFormatError(path, f"not a triangle mesh PLY ({type(m).__name__})")
        v = np.asarray(m.vertices, np.float64)
        f = np.asarray(m.faces, np.int64)
    except FileFormatError:
        raise
    except Exception as e:
        raise FileFormatError(path, f"cannot parse PLY ({e})") from None
    if len(v) == 0 or len(f) == 0:
        raise FileFormatError(path, "PLY has no vertices or no faces")
    out = LoadedMesh(v, f)
    vc = getattr(m.visual, "vertex_colors", None) if m.visual is not None and m.visual.kind == "vertex" else None
    if vc is not None and len(vc) == len(v):
        out.colors = np.asarray(vc)[:, :3].astype(np.float64) / 255.0
    return out


# --------------------------------------------------------------------------- GLB
def vertex_tangents_np(vertices: np.ndarray, faces: np.ndarray, uvs: np.ndarray, normals: np.ndarray) -> np.ndarray:
    """(V,4) glTF tangents of a mesh whose vertices each carry one UV (OBJ convention, v up):
    xyz along increasing u, orthogonal to the normal; w = +-1 so that cross(normal, xyz) * w
    points along increasing v (the top of the texture image), as normal maps expect."""
    p = vertices[faces]
    e1, e2 = p[:, 1] - p[:, 0], p[:, 2] - p[:, 0]
    d1, d2, r = uv_edges(faces, uvs)
    su = (e1 * d2[:, 1:2] - e2 * d1[:, 1:2]) * r
    sv = (e2 * d1[:, 0:1] - e1 * d2[:, 0:1]) * r
    tu = corner_sums(faces, su, vertices)
    tv = corner_sums(faces, sv, vertices)
    t_ortho = tu - (tu * normals).sum(1, keepdims=True) * normals
    length = np.linalg.norm(t_ortho, axis=1, keepdims=True)
    t_ortho = t_ortho / np.maximum(length, 1e-12)
    bad = length[:, 0] <= 1e-12
    if bad.any():  # a fallback tangent where the UV gradient vanishes, computed for those rows only
        nb = normals[bad]
        fallback = np.cross(nb, np.where(np.abs(nb[:, :1]) < 0.9, [[1.0, 0.0, 0.0]], [[0.0, 1.0, 0.0]]))
        fallback = fallback / np.linalg.norm(fallback, axis=1, keepdims=True)
        t_ortho = t_ortho.astype(np.result_type(t_ortho, fallback), copy=False)  # float32 input: float64, as np.where made it
        t_ortho[bad] = fallback
    w = np.where((np.cross(normals, t_ortho) * tv).sum(1) < 0.0, -1.0, 1.0)
    return np.concatenate([t_ortho, w[:, None]], 1)


def uv_edges(faces: np.ndarray, uvs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per face of ``faces`` (F, 3) with one UV per vertex ``uvs`` (V, 2): the UV edges d1 = t1 - t0
    and d2 = t2 - t0 (F, 2) and the inverse of their determinant r (F, 1) (0 where it is below
    1e-20). The same for every mesh of a layout: kept for the last few layouts (found by content)."""
    arrays = (np.asarray(faces), np.asarray(uvs))
    key = ContentMemo.key(arrays)
    with _MEMO_LOCK:
        hit = _UV_EDGES.get(key, arrays)
    if hit is not None:
        return hit
    t = uvs[faces]
    d1, d2 = t[:, 1] - t[:, 0], t[:, 2] - t[:, 0]
    det = d1[:, 0] * d2[:, 1] - d2[:, 0] * d1[:, 1]
    r = np.where(np.abs(det) > 1e-20, 1.0 / np.where(np.abs(det) > 1e-20, det, 1.0), 0.0)[:, None]
    for a in (d1, d2, r):
        a.flags.writeable = False
    with _MEMO_LOCK:
        return _UV_EDGES.put(key, arrays, (d1, d2, r))


_UV_EDGES: ContentMemo[tuple[np.ndarray, np.ndarray, np.ndarray]] = ContentMemo(4)


def split_seams(faces: np.ndarray, uv_faces: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One index buffer for positions+UVs: returns (vert_index (N,), uv_index (N,), new_faces (F,3))
    where each new vertex k is the pair (vert_index[k], uv_index[k])."""
    vi = np.asarray(faces, np.int64).reshape(-1)
    ti = np.asarray(uv_faces, np.int64).reshape(-1)
    key = ContentMemo.key((vi, ti))
    hit = _SEAMS_MEMO.get(key, (vi, ti))
    if hit is None:
        hit = _SEAMS_MEMO.put(key, (vi, ti), _split_seams(vi, ti))
    return tuple(x.copy() for x in hit)  # type: ignore[return-value]


_SEAMS_MEMO: ContentMemo[tuple[np.ndarray, np.ndarray, np.ndarray]] = ContentMemo(4)


def _split_seams(vi: np.ndarray, ti: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if vi.size == 0:
        return vi, ti, vi.reshape(0, 3)
    # one int64 key per pair sorts exactly like the pairs (np.unique(axis=0)'s lexicographic order), ~10x faster
    span = int(ti.max()) + 1
    uniq, inverse = np.unique(vi * span + ti, return_inverse=True)
    return uniq // span, uniq % span, inverse.reshape(-1, 3).astype(np.int64)


SPARSE_EPS = 1e-5
"""Morph-target deltas below this (metres, 0.01 mm) are left out of the sparse accessors."""


@dataclass(frozen=True)
class MorphTargets:
    """Morph targets (and optionally their animation) for :func:`save_glb`.

    names (K,); deltas (K, V, 3) metres per unit weight on the mesh's (unsplit) vertices;
    default (K,) the mesh's resting weights (glTF ``mesh.weights``; zeros when None).
    Animation, when ``frames`` is given: frames (T, K) weights sampled at ``fps``; rotation
    (T, 4) unit quaternions (x, y, z, w) of the node or None; extras (dict) copied to the
    scene, the animation and (``audio`` only) the asset.
    Deltas are stored as sparse accessors: only vertices that move more than :data:`SPARSE_EPS`.
    ``shared`` (S, V, 3), optional: a read-only array equal to ``deltas[:S]`` that stays the same
    object from mesh to mesh (a linear model's ARKit deltas,
    :func:`face3d.animation.retarget.linear_arkit_deltas`); its sparse encoding is computed once.
    """

    names: tuple[str, ...]
    deltas: np.ndarray
    default: np.ndarray | None = None
    frames: np.ndarray | None = None
    fps: float = 30.0
    rotation: np.ndarray | None = None
    extras: dict[str, object] | None = None
    shared: np.ndarray | None = None


class _GlbBuffer:
    """The binary chunk of a GLB being written: aligned buffer views and their accessors."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []  # the blob in pieces, joined once (a growing bytearray copied ~8 MB a few times)
        self.size = 0
        self.views: list[pygltflib.BufferView] = []
        self.accessors: list[pygltflib.Accessor] = []

    def view(self, data: bytes, target: int | None = None) -> int:
        import pygltflib as g

        self.align()
        self.views.append(g.BufferView(buffer=0, byteOffset=self.size, byteLength=len(data), target=target))
        self.chunks.append(data)
        self.size += len(data)
        return len(self.views) - 1

    def align(self) -> None:
        """Zeros up to the next multiple of 4 bytes."""
        if self.size % 4:
            self.chunks.append(bytes(-self.size % 4))
            self.size += -self.size % 4

    def accessor(self, arr: np.ndarray, atype: str, target: int | None = None, minmax: bool = False) -> int:
        import pygltflib as g

        arr = np.ascontiguousarray(arr)
        ctype = g.UNSIGNED_INT if arr.dtype == np.uint32 else g.FLOAT
        acc = g.Accessor(bufferView=self.view(arr.tobytes(), target), componentType=ctype, count=int(arr.shape[0]), type=atype)
        if minmax:
            flat = arr.reshape(arr.shape[0], -1)
            acc.min = [float(x) for x in flat.min(0)]
            acc.max = [float(x) for x in flat.max(0)]
        self.accessors.append(acc)
        return len(self.accessors) - 1

    def sparse_vec3s(self, deltas: np.ndarray, rows_of: np.ndarray, shared: np.ndarray | None = None) -> list[int]:
        """One VEC3 float accessor per target of ``deltas`` (K, V, 3) float32 or float64: ``len(rows_of)``
        zeros with the rows of ``deltas[k][rows_of]`` above SPARSE_EPS substituted (components below it zeroed).
        ``shared`` (S, V, 3), read-only and equal to ``deltas[:S]``: its targets' encoding is
        memoised (:func:`_shared_parts`), the same bytes."""
        parts = _shared_parts(shared, rows_of) if shared is not None else []
        parts += sparse_parts(deltas[len(parts):], rows_of)
        return [self._sparse_accessor(part, len(rows_of)) for part in parts]

    def _sparse_accessor(self, part: SparsePart, n: int) -> int:
        import pygltflib as g

        acc = g.Accessor(componentType=g.FLOAT, count=n, type=g.VEC3, byteOffset=None, min=list(part.lo), max=list(part.hi))
        if part.count:
            acc.sparse = g.Sparse(count=part.count,
                                  indices=g.AccessorSparseIndices(bufferView=self.view(part.rows), componentType=g.UNSIGNED_INT),
                                  values=g.AccessorSparseValues(bufferView=self.view(part.values)))
        self.accessors.append(acc)
        return len(self.accessors) - 1


@dataclass(frozen=True)
class SparsePart:
    """One morph target's sparse VEC3 accessor: ``count`` kept rows, their indices (uint32 bytes)
    into the split vertices and values (float32 bytes), and the accessor's min and max (3,)."""

    count: int
    rows: bytes
    values: bytes
    lo: tuple[float, ...]
    hi: tuple[float, ...]


def sparse_parts(deltas: np.ndarray, rows_of: np.ndarray) -> list[SparsePart]:
    """The sparse encoding of each target of ``deltas`` (K, V, 3) float32 or float64 on the split
    vertices ``rows_of`` (N,) (vertex of each): rows with a component above SPARSE_EPS, the
    components below it zeroed; min and max over all N rows (the left-out ones are zeros)."""
    eps = deltas.dtype.type(SPARSE_EPS)
    if float(eps) > SPARSE_EPS:  # float32: the largest value not above SPARSE_EPS, so ``> eps`` means ``> SPARSE_EPS``
        eps = np.nextafter(eps, deltas.dtype.type(0))
    big = np.abs(deltas) > eps  # (K, V, 3); thresholds found once on the unsplit vertices
    moved = (big[..., 0] | big[..., 1] | big[..., 2])[:, rows_of]
    kk, rows = np.nonzero(moved)  # all targets at once, target by target, rows in order
    flat = kk * deltas.shape[1] + rows_of[rows]  # (target, vertex) rows of the (K·V, 3) views; np.take: ~3x faster than [kk, src]
    kept = np.where(np.take(big.reshape(-1, 3), flat, axis=0), np.take(deltas.reshape(-1, 3), flat, axis=0), deltas.dtype.type(0))
    kept = kept.astype(np.float32, copy=False)
    rows = rows.astype(np.uint32, copy=False)
    ends = np.cumsum(np.bincount(kk, minlength=len(deltas)))
    starts = np.concatenate([[0], ends[:-1]])
    n = len(rows_of)
    out = []
    for k in range(len(deltas)):
        a, b = int(starts[k]), int(ends[k])
        part = kept[a:b]
        lo = part.min(0) if b > a else np.full(3, np.inf, np.float32)
        hi = part.max(0) if b > a else np.full(3, -np.inf, np.float32)
        if b - a < n:  # the zeros left
            lo, hi = np.minimum(lo, 0.0), np.maximum(hi, 0.0)
        out.append(SparsePart(b - a, rows[a:b].tobytes(), part.tobytes(), tuple(float(x) for x in lo), tuple(float(x) for x in hi)))
    return out


def _shared_parts(shared: np.ndarray, rows_of: np.ndarray) -> list[SparsePart]:
    """:func:`sparse_parts` of a read-only ``shared`` (S, V, 3) array (the same object for every
    mesh of a model, e.g. its ARKit deltas), memoised by the array's identity and ``rows_of``'s content."""
    key = ContentMemo.key((rows_of,), id(shared))
    with _MEMO_LOCK:
        hit = _SHARED_PARTS.get(key, (rows_of,))
    if hit is not None and hit[0]() is shared:
        return list(hit[1])
    parts = sparse_parts(shared, rows_of)
    with _MEMO_LOCK:
        _SHARED_PARTS.put(key, (rows_of,), (weakref.ref(shared), tuple(parts)))
    return parts


_SHARED_PARTS: ContentMemo[tuple[weakref.ref[np.ndarray], tuple[SparsePart, ...]]] = ContentMemo(4)
_MEMO_LOCK = threading.Lock()


def _animation(buf: _GlbBuffer, morphs: MorphTargets) -> pygltflib.Animation:
    import pygltflib as g

    frames = np.asarray(morphs.frames, np.float32)
    times = (np.arange(len(frames)) / morphs.fps).astype(np.float32)
    t_acc = buf.accessor(times, g.SCALAR, minmax=True)
    samplers = [g.AnimationSampler(input=t_acc, output=buf.accessor(frames.reshape(-1), g.SCALAR), interpolation="LINEAR")]
    channels = [g.AnimationChannel(sampler=0, target=g.AnimationChannelTarget(node=0, path="weights"))]
    if morphs.rotation is not None:
        samplers.append(g.AnimationSampler(input=t_acc, output=buf.accessor(np.asarray(morphs.rotation, np.float32), g.VEC4),
                                           interpolation="LINEAR"))
        channels.append(g.AnimationChannel(sampler=1, target=g.AnimationChannelTarget(node=0, path="rotation")))
    return g.Animation(name="performance", samplers=samplers, channels=channels, extras=dict(morphs.extras or {}))


def save_glb(path: str | os.PathLike[str], vertices: ArrayLike, faces: ArrayLike, uvs: ArrayLike | None = None,
             uv_faces: ArrayLike | None = None, material: Material | None = None, *, name: str = "face3d",
             morphs: MorphTargets | None = None) -> Path:
    """Write a binary glTF 2.0 file (one mesh, one PBR material), atomically.

    vertices (V,3) metres (+Y up, as glTF); uvs (T,2) OBJ convention + uv_faces (F,3); ``material``
    (:class:`Material`): its texture (R,R,3) in [0,1] -> ``baseColorTexture``; normal map (R,R,3)
    tangent-space in [0,1] (OpenGL convention, as glTF) -> ``normalTexture`` plus per-vertex
    ``TANGENT``s; vertex colours (V,3) -> ``COLOR_0`` (PNG paths are read); the mesh, node, scene
    and material (``<name>_material``) are called ``name``;
    ``morphs``: morph targets named in ``mesh.extras.targetNames`` (the convention Blender,
    three.js and Babylon read) and, with frames, an animation "performance" of their weights.
    Vertices are split at UV seams; smooth ``NORMAL``s are computed on the unsplit mesh.
    """
    import pygltflib as g

    mat = material or Material()
    albedo, normal_map = (load_png(t) if isinstance(t, (str, os.PathLike)) else t for t in (mat.texture, mat.normal_map))
    vertex_colors = mat.vertex_colors
    v, f = _check_mesh(vertices, faces)
    if (albedo is not None or normal_map is not None) and (uvs is None or uv_faces is None):
        raise BadInputError("save_glb: 'albedo'/'normal_map' need 'uvs' and 'uv_faces'")
    colors = _check_colors(vertex_colors, len(v), "vertex_colors") if vertex_colors is not None else None
    normals = vertex_normals_np(v, f)
    if uvs is not None and uv_faces is not None:
        t, tf = _check_uvs(uvs, uv_faces, len(f))
        vi, ti, nf = split_seams(f, tf)
        tex = np.stack([t[ti, 0], 1.0 - t[ti, 1]], 1).astype(np.float32)
    else:
        vi, nf, tex = np.arange(len(v)), f, None
    pos = v[vi].astype(np.float32)
    nrm = normals[vi].astype(np.float32)

    buf = _GlbBuffer()
    attrs = g.Attributes(POSITION=buf.accessor(pos, g.VEC3, g.ARRAY_BUFFER, minmax=True), NORMAL=buf.accessor(nrm, g.VEC3, g.ARRAY_BUFFER))
    if tex is not None:
        attrs.TEXCOORD_0 = buf.accessor(tex, g.VEC2, g.ARRAY_BUFFER)
    if normal_map is not None and tex is not None:
        obj_uv = np.stack([tex[:, 0], 1.0 - tex[:, 1]], 1).astype(np.float64)
        tangents = vertex_tangents_np(pos.astype(np.float64), nf, obj_uv, nrm.astype(np.float64))
        attrs.TANGENT = buf.accessor(tangents.astype(np.float32), g.VEC4, g.ARRAY_BUFFER)
    if colors is not None:
        attrs.COLOR_0 = buf.accessor(colors[vi].astype(np.float32), g.VEC3, g.ARRAY_BUFFER)
    indices = buf.accessor(nf.reshape(-1).astype(np.uint32), g.SCALAR, g.ELEMENT_ARRAY_BUFFER)
    mesh = g.Mesh(name=name, primitives=[g.Primitive(attributes=attrs, indices=indices, material=0, mode=g.TRIANGLES)])
    if morphs is not None:
        deltas = np.asarray(morphs.deltas)
        deltas = deltas if deltas.dtype == np.float32 else deltas.astype(np.float64)  # float32 kept: no 2x copy
        if deltas.shape != (len(morphs.names), len(v), 3):
            raise ShapeError("morphs.deltas", f"({len(morphs.names)}, {len(v)}, 3)", deltas.shape)
        shared = morphs.shared
        if shared is not None and (shared.flags.writeable or shared.dtype != deltas.dtype or shared.ndim != 3
                                   or len(shared) > len(deltas) or not np.array_equal(shared, deltas[:len(shared)])):
            raise BadInputError("morphs.shared: expected a read-only array equal to the leading targets of 'morphs.deltas', of their dtype")
        mesh.primitives[0].targets = [g.Attributes(POSITION=a) for a in buf.sparse_vec3s(deltas, vi, shared)]
        default = np.zeros(len(deltas)) if morphs.default is None else np.asarray(morphs.default, np.float64)
        mesh.weights = [float(x) for x in default]
        mesh.extras = {"targetNames": list(morphs.names)}

    images: list[g.Image] = []
    textures: list[g.Texture] = []
    pbr = g.PbrMetallicRoughness(baseColorFactor=[1.0, 1.0, 1.0, 1.0], metallicFactor=0.0, roughnessFactor=0.8)
    material = g.Material(name=f"{name}_material", pbrMetallicRoughness=pbr, doubleSided=False)
    for key, img in (("albedo", albedo), ("normal_map", normal_map)):
        if img is None:
            continue
        if isinstance(img, Future):
            data = img.result()
            if png_channels(data) != 3:
                raise ShapeError(key, "an RGB PNG", f"a PNG of {png_channels(data)} channels")
        else:
            a = _np(img)
            if a.ndim != 3 or a.shape[2] != 3:
                raise ShapeError(key, "(H, W, 3) image in [0, 1]", a.shape)
            data = png_bytes(a, key)
        images.append(g.Image(bufferView=buf.view(data), mimeType="image/png", name=key))
        textures.append(g.Texture(sampler=0, source=len(images) - 1))
        if key == "albedo":
            pbr.baseColorTexture = g.TextureInfo(index=len(textures) - 1)
        else:
            material.normalTexture = g.NormalMaterialTexture(index=len(textures) - 1)
    animations = [_animation(buf, morphs)] if morphs is not None and morphs.frames is not None else []
    buf.align()

    extras = dict(morphs.extras or {}) if morphs is not None else {}
    gltf = g.GLTF2(
        asset=g.Asset(version="2.0", generator="face3d", extras={"audio": extras["audio"]} if "audio" in extras else {}),
        scene=0,
        scenes=[g.Scene(nodes=[0], name=name, extras=extras)],
        nodes=[g.Node(mesh=0, name=name)],
        meshes=[mesh],
        materials=[material],
        accessors=buf.accessors,
        bufferViews=buf.views,
        buffers=[g.Buffer(byteLength=buf.size)],
        animations=animations,
    )
    if images:
        gltf.images = images
        gltf.textures = textures
        gltf.samplers = [g.Sampler(magFilter=g.LINEAR, minFilter=g.LINEAR_MIPMAP_LINEAR, wrapS=g.CLAMP_TO_EDGE, wrapT=g.CLAMP_TO_EDGE)]
    return write_bytes(path, glb_bytes(gltf, buf.chunks))


def glb_bytes(gltf: pygltflib.GLTF2, chunks: list[bytes]) -> bytes:
    """The bytes ``gltf.save_to_bytes()`` writes for ``gltf`` with the binary chunk ``b"".join(chunks)``,
    for a GLTF2 built as :func:`save_glb` builds it: one buffer, that blob, its views laid out one
    after the other at 4-byte boundaries (pygltflib's own packing, which it would redo) and no extension.
    The same JSON (pygltflib's dict of the dataclasses, its encoder and settings), without
    pygltflib's deep copies of every value and its copies of the blob."""
    import json
    import struct

    import pygltflib as g

    size = sum(len(c) for c in chunks)
    if gltf.extensionsUsed or len(gltf.buffers) != 1 or gltf.buffers[0].byteLength != size or gltf.buffers[0].uri is not None:
        raise BadInputError("glb_bytes: expected one embedded buffer of the blob's length and no extensions")
    data = g.delete_empty_keys(_gltf_dict(gltf))
    js = json.dumps(data, cls=g.JsonEncoder, default=g.json_serial, indent=None, allow_nan=False, skipkeys=True,
                    separators=(",", ":")).encode("utf-8")
    js += b" " * (-(12 + len(js)) % 4)
    head = struct.pack("<4sIII4s", g.MAGIC, g.GLTF_VERSION, 12 + 16 + len(js) + size, len(js), g.JSON.encode())
    return b"".join((head, js, struct.pack("<I4s", size, g.BIN.encode()), *chunks))


def _gltf_dict(obj: object) -> object:
    """pygltflib's ``gltf_asdict``: dataclasses as dicts of their fields in order, ``Attributes``
    as their ``__dict__``, new containers throughout (``delete_empty_keys`` edits them); immutable
    leaves are shared instead of deep-copied, any other leaf is deep-copied as pygltflib does."""
    import copy

    import pygltflib as g

    t = type(obj)
    if t in (int, float, str, bool) or obj is None:
        return obj
    if t is g.Attributes:
        return {k: _gltf_dict(v) for k, v in obj.__dict__.items()}
    names = _FIELDS.get(t)
    if names is None and dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        names = _FIELDS[t] = tuple(f.name for f in dataclasses.fields(obj))
    if names is not None:
        return {n: _gltf_dict(getattr(obj, n)) for n in names}
    if isinstance(obj, tuple) and hasattr(obj, "_fields"):
        return t(*[_gltf_dict(v) for v in obj])  # type: ignore[arg-type]
    if isinstance(obj, (list, tuple)):
        return t(_gltf_dict(v) for v in obj)  # type: ignore[call-arg]
    if isinstance(obj, dict):
        return t((_gltf_dict(k), _gltf_dict(v)) for k, v in obj.items())  # type: ignore[call-arg]
    return copy.deepcopy(obj)


_FIELDS: dict[type, tuple[str, ...]] = {}


_GLTF_DTYPES = {5120: np.int8, 5121: np.uint8, 5122: np.int16, 5123: np.uint16, 5125: np.uint32, 5126: np.float32}
_GLTF_SIZES = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4}


def _load_glb(path: Path) -> LoadedMesh:
    import pygltflib as g

    data = path.read_bytes()
    if len(data) < 12 or data[:4] != b"glTF":
        raise FileFormatError(path, "not a binary glTF file (bad magic)")
    try:
        gltf = g.GLTF2.load_from_bytes(data)
        blob = gltf.binary_blob() or b""

        def view_bytes(index: int) -> bytes:
            bv = gltf.bufferViews[index]
            return blob[(bv.byteOffset or 0) : (bv.byteOffset or 0) + bv.byteLength]

        def rows(view: int, offset: int, dt: np.dtype, n: int, count: int) -> np.ndarray:
            bv = gltf.bufferViews[view]
            start = (bv.byteOffset or 0) + offset
            stride = bv.byteStride or dt.itemsize * n
            raw = np.frombuffer(blob, dtype=np.uint8, count=stride * (count - 1) + dt.itemsize * n, offset=start)
            return np.ascontiguousarray(np.lib.stride_tricks.as_strided(raw, (count, dt.itemsize * n), (stride, 1))).view(dt).reshape(count, n)

        def read(index: int) -> np.ndarray:
            acc = gltf.accessors[index]
            dt = np.dtype(_GLTF_DTYPES[acc.componentType])
            n = _GLTF_SIZES[acc.type]
            if acc.bufferView is None:
                out = np.zeros((acc.count, n), dt)
            else:
                out = rows(acc.bufferView, acc.byteOffset or 0, dt, n, acc.count)
            if acc.sparse is not None:  # substitute the sparse rows (glTF 2.0 section 3.6.2.3)
                sp = acc.sparse
                idx = rows(sp.indices.bufferView, sp.indices.byteOffset or 0, np.dtype(_GLTF_DTYPES[sp.indices.componentType]), 1, sp.count)
                out = out.copy()
                out[idx[:, 0].astype(np.int64)] = rows(sp.values.bufferView, sp.values.byteOffset or 0, dt, n, sp.count)
            if acc.normalized and dt.kind in "ui":
                out = out.astype(np.float64) / float(np.iinfo(dt.type).max)  # type: ignore[type-var]
            return out

        verts, faces, uvs, cols = [], [], [], []
        offset = 0
        prim0 = None
        for mesh in gltf.meshes:
            for prim in mesh.primitives:
                prim0 = prim0 or prim
                p = read(prim.attributes.POSITION).astype(np.float64)
                idx = read(prim.indices).reshape(-1, 3).astype(np.int64) if prim.indices is not None else np.arange(len(p)).reshape(-1, 3)
                verts.append(p)
                faces.append(idx + offset)
                if prim.attributes.TEXCOORD_0 is not None:
                    uvs.append(read(prim.attributes.TEXCOORD_0).astype(np.float64))
                if prim.attributes.COLOR_0 is not None:
                    cols.append(read(prim.attributes.COLOR_0)[:, :3].astype(np.float64))
                offset += len(p)
    except FileFormatError:
        raise
    except Exception as e:
        raise FileFormatError(path, f"cannot parse GLB ({type(e).__name__}: {e})") from None
    if not verts:
        raise FileFormatError(path, "GLB has no mesh primitives")
    v = np.concatenate(verts)
    f = np.concatenate(faces)
    if f.size and (f.min() < 0 or f.max() >= len(v)):
        raise FileFormatError(path, "GLB indices out of range")
    out = LoadedMesh(v, f)
    if len(uvs) == len(verts):
        t = np.concatenate(uvs)
        out.uvs = np.stack([t[:, 0], 1.0 - t[:, 1]], 1)
        out.uv_faces = f.copy()
    if len(cols) == len(verts):
        out.colors = np.concatenate(cols)
    try:
        if prim0 is not None and prim0.targets and len(verts) == 1:
            mesh0 = gltf.meshes[0]
            names = (mesh0.extras or {}).get("targetNames") or [f"target_{k}" for k in range(len(prim0.targets))]
            out.morph_names = [str(n) for n in names]
            out.morph_deltas = np.stack([read(t["POSITION"]).astype(np.float64) for t in prim0.targets])
            out.morph_weights = np.asarray(mesh0.weights or [0.0] * len(prim0.targets), np.float64)
        if prim0 is not None and prim0.attributes.NORMAL is not None and len(verts) == 1:
            out.normals = read(prim0.attributes.NORMAL).astype(np.float64)
    except Exception as e:
        raise FileFormatError(path, f"cannot read the GLB's normals or morph targets ({type(e).__name__}: {e})") from None
    if prim0 is not None and prim0.material is not None and gltf.materials:
        mat = gltf.materials[prim0.material]
        out.texture = _glb_image(gltf, view_bytes, getattr(mat.pbrMetallicRoughness, "baseColorTexture", None), path)
        out.normal_map = _glb_image(gltf, view_bytes, mat.normalTexture, path)
    return out


def _glb_image(gltf: pygltflib.GLTF2, view_bytes: Callable[[int], bytes], info: pygltflib.TextureInfo | None, path: Path) -> np.ndarray | None:
    from PIL import Image

    if info is None or gltf.textures is None:
        return None
    img = gltf.images[gltf.textures[info.index].source]
    if img.bufferView is None:
        return None
    try:
        with Image.open(io.BytesIO(view_bytes(img.bufferView))) as im:
            return np.asarray(im.convert("RGB")).astype(np.float32) / 255.0
    except Exception as e:
        raise FileFormatError(path, f"embedded image cannot be decoded ({e})") from None


# --------------------------------------------------------------------------- dispatch
def load_mesh(path: str | os.PathLike[str]) -> LoadedMesh:
    """Read an ``.obj``, ``.ply`` or ``.glb`` file (dispatch on the suffix) as a :class:`LoadedMesh`."""
    p = Path(path)
    if not p.is_file():
        raise FileFormatError(p, "file not found")
    suffix = p.suffix.lower()
    if suffix == ".obj":
        return _load_obj(p)
    if suffix == ".ply":
        return _load_ply(p)
    if suffix == ".glb":
        return _load_glb(p)
    raise FileFormatError(p, f"unsupported mesh file type '{suffix}' (expected .obj, .ply or .glb)")


__all__ = ["SPARSE_EPS", "LoadedMesh", "MorphTargets", "load_mesh", "save_glb", "save_obj", "save_ply", "split_seams", "vertex_normals_np", "vertex_tangents_np"]
