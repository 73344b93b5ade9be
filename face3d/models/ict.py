"""ICT-FaceKit ("ICT Face Model Light", USC ICT, MIT licence) as a :class:`MorphableModel`.

Sources: the compact ``ict_facekit.npz`` (see ``shared/data/ict_facekit/README.md``) or the
original ``FaceXModel/`` folder of OBJ files (or a zip archive holding it). Both are in
centimetres with +Y up, +Z out of the face and +X toward the subject's left, so conversion
is a scale by 0.01 (metres); the origin is kept (inside the head, nose tip at z = 0.13 m).

Identity prior: the 100 identity shapes are PCA modes of light-stage scans, each stored as
``identity_k.obj - neutral`` and scaled to one standard deviation (upstream draws random
identities as standard normal weights; the modes are mutually orthogonal to |cos| < 1e-4 and
their norms fall from mode 0 to 99). They are therefore used as they are: ``id_basis`` = the
deltas, ``id_std`` = 1, i.e. the prior is ``N(0, I)`` on the weights -- exactly the PCA prior
with the eigenvalues folded into the basis (PCA over these modes would return them unchanged).

Expressions: the 53 ``_L``/``_R`` shapes are mapped onto the 52 ARKit names in
``face3d.arkit.ARKIT_NAMES`` order. ``_L`` is the subject's left, as is ARKit's ``Left``
(``eyeBlink_L`` -> ``eyeBlinkLeft``). ``browInnerUp_L + browInnerUp_R`` -> ``browInnerUp``
and ``cheekPuff_L + cheekPuff_R`` -> ``cheekPuff`` (deltas summed). ICT has no tongue
shape: ``tongueOut`` is a zero delta (listed in ``meta['zero_expressions']``) so that every
ARKit model shares the same 52 coefficients. ``mouthClose`` is ARKit's corrective, only
meaningful together with ``jawOpen`` (keep w(mouthClose) <= w(jawOpen)). ``PupilDilate_L/R``
are not ARKit shapes and are dropped.

Vertex order: ``parts='full'`` keeps all 26,719 vertices in the upstream order (submesh
ranges in :data:`ICT_SUBMESHES`). ``parts='face'`` keeps, in the same relative order, the
submeshes face, head_and_neck, eye_socket_left/right and eyeball_left/right (12,016 + 3,140 =
15,156 vertices, 30,168 triangles): a clean head surface without teeth, gums/tongue, mouth
socket, lacrimal fluid, eye blend/occlusion shells or eyelashes, for fitting and rendering.

Landmarks: ``ibug68`` from the upstream ``idx_to_landmark_verts`` vertex ids (each as the
corner of a triangle of the face submesh with a one-hot barycentric); ``ibug68_jawline``
replaces the contour points 0-7 / 9-16 with upstream's ``jawline_right`` / ``jawline_left``
substitutes; ``jawline_right_extended`` / ``jawline_left_extended`` (17 each) are extra sets.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Mapping

import numpy as np

from face3d.arkit import ARKIT_NAMES
from face3d.errors import BadInputError, ModelFileError, ModelNotFoundError
from face3d.io.npz import read_npz
from face3d.models.model import ModelArrays, MorphableModel

CM_TO_M = 0.01
CONVERTER_VERSION = "ict-1"
N_VERTICES = 26719
N_POLYGONS = 26384

#: Upstream submeshes: (name, vertex range, polygon range), half-open, from the ICT-FaceKit README.
ICT_SUBMESHES: tuple[tuple[str, tuple[int, int], tuple[int, int]], ...] = (
    ("face", (0, 9409), (0, 9230)),
    ("head_and_neck", (9409, 11248), (9230, 11144)),
    ("mouth_socket", (11248, 13294), (11144, 13226)),
    ("eye_socket_left", (13294, 13678), (13226, 13630)),
    ("eye_socket_right", (13678, 14062), (13630, 14034)),
    ("gums_and_tongue", (14062, 17039), (14034, 17006)),
    ("teeth", (17039, 21451), (17006, 21496)),
    ("eyeball_left", (21451, 23021), (21496, 23094)),
    ("eyeball_right", (23021, 24591), (23094, 24692)),
    ("lacrimal_fluid_left", (24591, 24795), (24692, 24855)),
    ("lacrimal_fluid_right", (24795, 24999), (24855, 25018)),
    ("eye_blend_left", (24999, 25023), (25018, 25033)),
    ("eye_blend_right", (25023, 25047), (25033, 25048)),
    ("eye_occlusion_left", (25047, 25199), (25048, 25176)),
    ("eye_occlusion_right", (25199, 25351), (25176, 25304)),
    ("eyelashes_left", (25351, 26035), (25304, 25844)),
    ("eyelashes_right", (26035, 26719), (25844, 26384)),
)
#: Upstream detail regions (vertex ranges, half-open).
ICT_DETAIL_REGIONS: dict[str, tuple[int, int]] = {
    "narrow_face_area": (0, 6706), "sclera_left": (21451, 22221), "iris_left": (22221, 23021),
    "sclera_right": (23021, 23791), "iris_right": (23791, 24591),
}
#: Upstream jawline substitutes for iBUG landmarks 0-7 (subject's right) and 9-16 (left).
ICT_JAWLINE_RIGHT = (1278, 1272, 12, 1834, 243, 781, 2199, 1447)
ICT_JAWLINE_LEFT = (3661, 4390, 3022, 2484, 4036, 2253, 3490, 3496)
ICT_JAWLINE_RIGHT_EXTENDED = (1280, 1278, 1275, 1272, 1248, 12, 820, 1834, 1902, 243, 844, 781, 1673, 2199, 801, 1447, 800)
ICT_JAWLINE_LEFT_EXTENDED = (3041, 3661, 3042, 4390, 3880, 3022, 3085, 2484, 4102, 4036, 3061, 2253, 3466, 3490, 3493, 3496, 3498)

#: Submeshes kept by ``parts='face'``.
FACE_PARTS = ("face", "head_and_neck", "eye_socket_left", "eye_socket_right", "eyeball_left", "eyeball_right")
PARTS = ("full", "face")

#: Region name -> submeshes it unites.
REGION_GROUPS: dict[str, tuple[str, ...]] = {
    "skin": ("face", "head_and_neck"),
    "neck_scalp": ("head_and_neck",),
    "eyes": ("eyeball_left", "eyeball_right"),
    "eye_sockets": ("eye_socket_left", "eye_socket_right"),
    "mouth_interior": ("mouth_socket", "gums_and_tongue", "teeth"),
    "eyelashes": ("eyelashes_left", "eyelashes_right"),
    "eye_shells": ("lacrimal_fluid_left", "lacrimal_fluid_right", "eye_blend_left", "eye_blend_right",
                   "eye_occlusion_left", "eye_occlusion_right"),
}

_REQUIRED = ("neutral_vertices", "faces", "identity_deltas", "expression_names", "expression_deltas")


def ict_to_arkit_name(name: str) -> str:
    """ICT expression name -> ARKit name: ``eyeBlink_L`` -> ``eyeBlinkLeft``, ``jawOpen`` unchanged.

    ``browInnerUp_L``/``_R`` and ``cheekPuff_L``/``_R`` map to the single ARKit shape.
    """
    for suffix, side in (("_L", "Left"), ("_R", "Right")):
        if name.endswith(suffix):
            base = name[: -len(suffix)]
            return base if base in ("browInnerUp", "cheekPuff") else base + side
    return name


def arkit_basis(names: list[str], deltas: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """Sum ICT deltas (K,V,3) into the 52 ARKit shapes (52,V,3), ARKit order.

    Returns the basis and the ARKit names no source shape maps to (zero deltas).
    A source name with no ARKit counterpart raises :class:`BadInputError`.
    """
    index = {n: i for i, n in enumerate(ARKIT_NAMES)}
    out = np.zeros((len(ARKIT_NAMES), *deltas.shape[1:]), dtype=np.float32)
    hit = np.zeros(len(ARKIT_NAMES), dtype=bool)
    for n, d in zip(names, deltas):
        a = ict_to_arkit_name(str(n))
        if a not in index:
            raise BadInputError(f"ICT expression '{n}' has no ARKit counterpart ('{a}')")
        out[index[a]] += d.astype(np.float32)
        hit[index[a]] = True
    return out, [n for n, h in zip(ARKIT_NAMES, hit) if not h]


def _vertex_triangles(faces: np.ndarray, vertex_ids: np.ndarray, preferred_faces: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """For each vertex id, a triangle containing it (preferring ``preferred_faces``) and a one-hot barycentric."""
    tri = np.empty(len(vertex_ids), dtype=np.int64)
    bary = np.zeros((len(vertex_ids), 3), dtype=np.float32)
    for i, v in enumerate(vertex_ids):
        rows, cols = np.nonzero(faces == v)
        if rows.size == 0:
            raise BadInputError(f"landmark vertex {int(v)} is not used by any triangle")
        pick = 0
        if preferred_faces is not None:
            good = np.flatnonzero(preferred_faces[rows])
            pick = int(good[0]) if good.size else 0
        tri[i] = rows[pick]
        bary[i, cols[pick]] = 1.0
    return tri, bary


def _range_mask(V: int, r: tuple[int, int]) -> np.ndarray:
    m = np.zeros(V, dtype=bool)
    m[r[0]:r[1]] = True
    return m


def _regions(arrays: Mapping[str, np.ndarray], V: int) -> dict[str, np.ndarray]:
    regions: dict[str, np.ndarray] = {}
    if V == N_VERTICES:
        for name, vr, _ in ICT_SUBMESHES:
            regions[name] = _range_mask(V, vr)
        for name, vr in ICT_DETAIL_REGIONS.items():
            regions[name] = _range_mask(V, vr)
        for name, parts in REGION_GROUPS.items():
            regions[name] = np.logical_or.reduce([regions[p] for p in parts])
    elif "material_names" in arrays:
        # Not the upstream layout: one region per material, plus 'face' = vertices of M_Face.
        faces, f2p = np.asarray(arrays["faces"]), np.asarray(arrays["face_to_polygon"])
        for mname, (a, b) in zip(arrays["material_names"], arrays["material_polygon_ranges"]):
            m = np.zeros(V, dtype=bool)
            m[faces[(f2p >= a) & (f2p < b)].ravel()] = True
            regions[f"material_{mname}"] = m
        if "material_M_Face" in regions:
            regions["face"] = regions["material_M_Face"].copy()
    for key, name in (("fitting_vertex_indices", "fitting"), ("rigid_vertex_indices", "rigid")):
        if key in arrays:
            m = np.zeros(V, dtype=bool)
            m[np.asarray(arrays[key])] = True
            regions[name] = m
    return regions


def build_ict_model(arrays: Mapping[str, np.ndarray], parts: str = "full", source: str = "") -> MorphableModel:
    """A :class:`MorphableModel` (metres, ARKit names) from ICT arrays in the npz layout.

    ``parts``: 'full' (all 17 submeshes) or 'face' (see module docstring). Missing keys raise
    :class:`ModelFileError` naming ``source`` and the key.
    """
    if parts not in PARTS:
        raise BadInputError(f"ICT parts must be one of {PARTS}, got {parts!r}")
    for key in _REQUIRED:
        if key not in arrays:
            raise ModelFileError(source, f"missing key '{key}' (not an ICT-FaceKit file)")
    neutral = np.asarray(arrays["neutral_vertices"], dtype=np.float32)
    V = neutral.shape[0]
    faces = np.asarray(arrays["faces"], dtype=np.int64)
    id_d = np.asarray(arrays["identity_deltas"])
    ex_d = np.asarray(arrays["expression_deltas"])
    if neutral.ndim != 2 or neutral.shape[1] != 3 or id_d.shape[1:] != neutral.shape or ex_d.shape[1:] != neutral.shape:
        raise ModelFileError(source, f"inconsistent shapes: neutral {neutral.shape}, identity {id_d.shape}, expression {ex_d.shape}")
    exp_basis, zero = arkit_basis([str(n) for n in arrays["expression_names"]], ex_d)
    regions = _regions(arrays, V)
    embeddings: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    preferred = np.asarray(regions["face"][faces].all(1)) if "face" in regions else None
    if "landmarks_multipie68" in arrays:
        lm = np.asarray(arrays["landmarks_multipie68"], dtype=np.int64)
        if lm.shape != (68,) or lm.min() < 0 or lm.max() >= V:
            raise ModelFileError(source, f"key 'landmarks_multipie68' must be 68 vertex ids in [0, {V})")
        embeddings["ibug68"] = _vertex_triangles(faces, lm, preferred)
        if V == N_VERTICES:
            alt = lm.copy()
            alt[0:8] = ICT_JAWLINE_RIGHT
            alt[9:17] = ICT_JAWLINE_LEFT
            embeddings["ibug68_jawline"] = _vertex_triangles(faces, alt, preferred)
            embeddings["jawline_right_extended"] = _vertex_triangles(faces, np.array(ICT_JAWLINE_RIGHT_EXTENDED), preferred)
            embeddings["jawline_left_extended"] = _vertex_triangles(faces, np.array(ICT_JAWLINE_LEFT_EXTENDED), preferred)
    meta: dict[str, object] = {
        "licence": "MIT, Copyright (c) 2020 USC Institute for Creative Technologies (ICT-FaceKit)",
        "source": source, "units": "metres (converted from centimetres)", "parts": "full",
        "zero_expressions": zero, "identity_prior": "PCA modes at 1 std each: id_std = 1",
        "converter": CONVERTER_VERSION,
    }
    model = MorphableModel(ModelArrays(
        neutral * CM_TO_M, faces,
        id_basis=id_d.astype(np.float32) * CM_TO_M, id_std=np.ones(id_d.shape[0], np.float32),
        exp_basis=exp_basis * CM_TO_M, exp_names=list(ARKIT_NAMES),
        uvs=arrays.get("uvs"), uv_faces=arrays.get("uv_faces"), regions=regions, embeddings=embeddings,
    ), name="ict", version=CONVERTER_VERSION, meta=meta)
    return select_parts(model, parts)


def select_parts(model: MorphableModel, parts: str) -> MorphableModel:
    """``parts='face'``: the model restricted to :data:`FACE_PARTS` (needs their regions)."""
    if parts == "full":
        return model
    if parts not in PARTS:
        raise BadInputError(f"ICT parts must be one of {PARTS}, got {parts!r}")
    missing = [p for p in FACE_PARTS if p not in model.regions]
    if missing:
        raise BadInputError(f"model '{model.name}' lacks the submesh regions {missing} needed for parts='face'")
    mask = np.logical_or.reduce([model.regions[p].numpy() for p in FACE_PARTS])
    sub = model.subset(mask, name="ict")
    sub.meta["parts"] = parts
    sub.meta["load_options"] = {**model.load_options, "parts": parts}
    sub.regions = {k: m for k, m in sub.regions.items() if bool(m.any())}
    return sub


# ---------------------------------------------------------------------------- files and cache
def read_ict_source(path: str | Path) -> dict[str, np.ndarray]:
    """ICT arrays from an ``ict_facekit.npz``, a ``FaceXModel`` folder or a zip archive."""
    from face3d.models.obj_folder import read_facexmodel

    path = Path(path)
    if path.is_dir() or path.suffix.lower() == ".zip":
        return read_facexmodel(path)
    return read_npz(path, "ICT-FaceKit npz")


def default_sources() -> list[Path]:
    """Where ``load_model('ict')`` looks, in order: env ``FACE3D_ICT``; the converted model left by
    ``face3d models install ict``. (Tests, benchmarks and build commands of a development checkout
    point ``FACE3D_ICT`` at the shared data: :func:`face3d.testing.use_shared_ict`.)"""
    from face3d.paths import cache_dir

    out: list[Path] = []
    if os.environ.get("FACE3D_ICT"):
        out.append(Path(os.environ["FACE3D_ICT"]))
    out.append(cache_dir() / "models" / "ict" / "ict-full.npz")
    return out


def _cache_key(path: Path, parts: str) -> str:
    st = path.stat()
    token = f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}|{parts}|{CONVERTER_VERSION}"
    return hashlib.sha256(token.encode()).hexdigest()[:16]


def _is_native(path: Path) -> bool:
    if path.is_dir() or path.suffix.lower() != ".npz":
        return False
    try:
        with np.load(path, allow_pickle=False) as z:
            return "header_json" in z.files
    except Exception:
        return False


def load_ict(path: str | Path | None = None, parts: str = "full", cache: bool = True) -> MorphableModel:
    """Load ICT-FaceKit as a :class:`MorphableModel` in metres with the 52 ARKit expressions.

    ``path``: ``ict_facekit.npz``, a ``FaceXModel`` folder, a zip archive of the repository,
    or a converted native npz; default: the first of :func:`default_sources` that exists.
    ``parts``: 'full' or 'face'. With ``cache`` the conversion is stored as a native npz in
    ``face3d.paths.cache_dir()/models/ict`` keyed by the source's path, size and mtime, so
    the next load only reads that file.
    """
    if parts not in PARTS:
        raise BadInputError(f"ICT parts must be one of {PARTS}, got {parts!r}")
    if path is None:
        found = [p for p in default_sources() if p.exists()]
        if not found:
            raise ModelNotFoundError(
                "ICT-FaceKit is not installed: run 'face3d models install ict', set FACE3D_ICT to an "
                f"ict_facekit.npz or FaceXModel folder, or pass path=... (looked in {[str(p) for p in default_sources()]})")
        path = found[0]
    path = Path(path)
    if not path.exists():
        raise ModelFileError(path, "file not found")
    if _is_native(path):
        return select_parts(MorphableModel.from_npz(path), parts)
    if not cache:
        return build_ict_model(read_ict_source(path), parts, source=str(path))
    from face3d.paths import cache_dir

    cached = cache_dir() / "models" / "ict" / f"ict-{parts}-{_cache_key(path, parts)}.npz"
    if cached.exists():
        try:
            return MorphableModel.from_npz(cached)
        except ModelFileError:
            cached.unlink(missing_ok=True)
    if parts == "full":
        model = build_ict_model(read_ict_source(path), parts, source=str(path))
    else:
        model = select_parts(load_ict(path, "full", cache=True), parts)
    model.to_npz(cached, compress=False)
    return model
