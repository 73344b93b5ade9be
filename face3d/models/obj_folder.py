"""Reading ICT-FaceKit's ``FaceXModel/`` folder of OBJ files (from disk or inside a zip archive).

The folder holds ``generic_neutral_mesh.obj`` (vertices, UVs, quads/triangles grouped by
``usemtl``), ``identityNNN.obj`` and one OBJ per expression (same vertex order, positions
only matter) and ``vertex_indices.json`` (expression list, landmark and fitting vertex ids).
:func:`read_facexmodel` returns the same arrays as the compact ``ict_facekit.npz``
(see ``face3d.models.ict``), still in the source unit (centimetres).
"""

from __future__ import annotations

import json
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np

from face3d.errors import ModelFileError

NEUTRAL_OBJ = "generic_neutral_mesh.obj"
INDICES_JSON = "vertex_indices.json"


@dataclass
class ObjMesh:
    """A polygon mesh read from an OBJ file.

    vertices (N,3) float64; uvs (T,2) float64; polygons (P,4) int32 vertex ids and uv_polygons
    (P,4) int32 UV ids, both 0-based with -1 padding for triangles; materials: list of
    (name, first polygon) in file order.
    """

    vertices: np.ndarray
    uvs: np.ndarray
    polygons: np.ndarray
    uv_polygons: np.ndarray
    materials: list[tuple[str, int]]


_V_LINE = re.compile(r"^v[ \t]+(.*)$", re.MULTILINE)
_VT_LINE = re.compile(r"^vt[ \t]+(.*)$", re.MULTILINE)


def _floats(lines: list[str], width: int, what: str, where: str) -> np.ndarray:
    try:
        rows = [ln.split()[:width] for ln in lines]
        arr = np.array(rows, dtype=np.float64)
    except ValueError as exc:
        raise ModelFileError(where, f"bad '{what}' line in OBJ ({exc})") from None
    return arr.reshape(-1, width)


def read_obj_vertices(text: str, where: str = "<obj>") -> np.ndarray:
    """Vertex positions (N,3) float64 of OBJ ``text`` (the ``v`` lines, in order)."""
    return _floats(_V_LINE.findall(text), 3, "v", where)


def read_obj(text: str, where: str = "<obj>") -> ObjMesh:
    """Parse OBJ ``text``: ``v``, ``vt``, ``usemtl`` and ``f`` lines (polygons of 3 or 4 corners)."""
    vertices = read_obj_vertices(text, where)
    uvs = _floats(_VT_LINE.findall(text), 2, "vt", where)
    polys: list[list[int]] = []
    uv_polys: list[list[int]] = []
    materials: list[tuple[str, int]] = []
    for ln in text.splitlines():
        if ln.startswith("f "):
            corners = ln.split()[1:]
            if len(corners) not in (3, 4):
                raise ModelFileError(where, f"polygon with {len(corners)} corners (only 3 or 4 supported): {ln!r}")
            v, t = [], []
            for c in corners:
                parts = c.split("/")
                try:
                    v.append(int(parts[0]) - 1)
                    t.append(int(parts[1]) - 1 if len(parts) > 1 and parts[1] else -1)
                except ValueError:
                    raise ModelFileError(where, f"bad face line {ln!r}") from None
            pad = [-1] * (4 - len(corners))
            polys.append(v + pad)
            uv_polys.append(t + pad)
        elif ln.startswith("usemtl "):
            materials.append((ln.split(None, 1)[1].strip(), len(polys)))
    polygons = np.array(polys, dtype=np.int32).reshape(-1, 4)
    uv_polygons = np.array(uv_polys, dtype=np.int32).reshape(-1, 4)
    if polygons.size and (polygons.max() >= len(vertices) or (polygons[:, :3] < 0).any()):
        raise ModelFileError(where, "a face refers to a vertex that does not exist (negative/relative OBJ indices are not supported)")
    return ObjMesh(vertices, uvs, polygons, uv_polygons, materials)


def triangulate_fan(polygons: np.ndarray, uv_polygons: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Fan-triangulate (P,4) polygons (-1 padded): (p0,p1,p2), (p0,p2,p3).

    Returns faces (F,3) int32, face_to_polygon (F,) int32 and uv_faces (F,3) or None.
    """
    quad = polygons[:, 3] >= 0
    P = polygons.shape[0]
    first = np.arange(P)
    second = np.flatnonzero(quad)
    src = np.concatenate([first, second])
    order = np.argsort(src, kind="stable")
    src = src[order]
    cols_a = np.array([0, 1, 2])
    cols_b = np.array([0, 2, 3])
    which = np.concatenate([np.zeros(P, bool), np.ones(len(second), bool)])[order]

    def tri(arr: np.ndarray) -> np.ndarray:
        return np.where(which[:, None], arr[src][:, cols_b], arr[src][:, cols_a]).astype(np.int32)

    return tri(polygons), src.astype(np.int32), (tri(uv_polygons) if uv_polygons is not None else None)


class _Source:
    """Files of a folder, or of a folder inside a zip archive (found by its neutral OBJ)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.zip: zipfile.ZipFile | None = None
        self.prefix = ""
        if path.is_dir():
            if not (path / NEUTRAL_OBJ).is_file() and (path / "FaceXModel" / NEUTRAL_OBJ).is_file():
                self.path = path / "FaceXModel"
            if not (self.path / NEUTRAL_OBJ).is_file():
                raise ModelFileError(path, f"not an ICT FaceXModel folder (no {NEUTRAL_OBJ})")
        elif zipfile.is_zipfile(path):
            self.zip = zipfile.ZipFile(path)
            hits = [n for n in self.zip.namelist() if PurePosixPath(n).name == NEUTRAL_OBJ]
            if not hits:
                raise ModelFileError(path, f"archive has no FaceXModel/{NEUTRAL_OBJ}")
            self.prefix = str(PurePosixPath(min(hits, key=len)).parent)
        elif not path.exists():
            raise ModelFileError(path, "file not found")
        else:
            raise ModelFileError(path, "neither a FaceXModel folder nor a zip archive")

    def names(self) -> list[str]:
        if self.zip is None:
            return sorted(p.name for p in self.path.iterdir())
        pre = self.prefix + "/"
        return sorted(n[len(pre):] for n in self.zip.namelist() if n.startswith(pre) and "/" not in n[len(pre):] and n != pre)

    def where(self, name: str) -> str:
        return f"{self.path}!{self.prefix}/{name}" if self.zip is not None else str(self.path / name)

    def text(self, name: str) -> str:
        try:
            if self.zip is None:
                return (self.path / name).read_text(encoding="utf-8")
            return self.zip.read(f"{self.prefix}/{name}").decode("utf-8")
        except (FileNotFoundError, KeyError):
            raise ModelFileError(self.where(name), "file missing from the FaceXModel folder") from None
        except (UnicodeDecodeError, zipfile.BadZipFile, OSError) as exc:
            raise ModelFileError(self.where(name), f"unreadable ({exc})") from None


def _deltas(src: _Source, names: list[str], neutral: np.ndarray) -> np.ndarray:
    out = np.zeros((len(names), *neutral.shape), dtype=np.float32)
    for i, n in enumerate(names):
        fn = f"{n}.obj"
        v = read_obj_vertices(src.text(fn), src.where(fn))
        if v.shape != neutral.shape:
            raise ModelFileError(src.where(fn), f"has {len(v)} vertices, the neutral mesh has {len(neutral)}")
        out[i] = (v - neutral).astype(np.float32)
    return out


def read_facexmodel(path: str | Path) -> dict[str, np.ndarray]:
    """Arrays of ICT-FaceKit's ``FaceXModel`` (folder or zip archive) in the ``ict_facekit.npz`` layout.

    Keys: neutral_vertices, faces, face_to_polygon, polygons, uvs, uv_faces, uv_polygons,
    identity_names/deltas, expression_names/deltas, material_names/polygon_ranges, and from
    ``vertex_indices.json``: landmarks_multipie68, fitting_vertex_indices, rigid_vertex_indices,
    laplacian_rigid_vertex_indices, rigid_landmark_indices (when present). Units: the file's (cm).
    """
    src = _Source(Path(path))
    mesh = read_obj(src.text(NEUTRAL_OBJ), src.where(NEUTRAL_OBJ))
    try:
        info = json.loads(src.text(INDICES_JSON))
    except json.JSONDecodeError as exc:
        raise ModelFileError(src.where(INDICES_JSON), f"invalid JSON ({exc})") from None
    if "expressions" not in info:
        raise ModelFileError(src.where(INDICES_JSON), "missing key 'expressions'")
    faces, f2p, uv_faces = triangulate_fan(mesh.polygons, mesh.uv_polygons)
    assert uv_faces is not None
    neutral = mesh.vertices
    id_names = sorted(n[:-4] for n in src.names() if re.fullmatch(r"identity\d+\.obj", n))
    exp_names = [str(n) for n in info["expressions"]]
    mats = mesh.materials or [("default", 0)]
    starts = [s for _, s in mats] + [len(mesh.polygons)]
    arrays: dict[str, np.ndarray] = {
        "neutral_vertices": neutral.astype(np.float32),
        "faces": faces, "face_to_polygon": f2p, "polygons": mesh.polygons,
        "uvs": mesh.uvs.astype(np.float32), "uv_faces": uv_faces, "uv_polygons": mesh.uv_polygons,
        "identity_names": np.array(id_names), "identity_deltas": _deltas(src, id_names, neutral),
        "expression_names": np.array(exp_names), "expression_deltas": _deltas(src, exp_names, neutral),
        "material_names": np.array([m for m, _ in mats]),
        "material_polygon_ranges": np.array([[starts[i], starts[i + 1]] for i in range(len(mats))], dtype=np.int32),
        "units": np.array("cm"),
    }
    keys = {"idx_to_landmark_verts": "landmarks_multipie68", "idx_to_fitting_verts": "fitting_vertex_indices",
            "idx_to_rigid_verts": "rigid_vertex_indices", "idx_to_lap_rigid_verts": "laplacian_rigid_vertex_indices",
            "idx_to_rigid_landmark_idx": "rigid_landmark_indices"}
    for jk, ak in keys.items():
        if jk in info:
            arrays[ak] = np.asarray(info[jk], dtype=np.int32)
    return arrays
