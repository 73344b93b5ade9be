"""``Reconstruction``: the typed result of :func:`face3d.reconstruct` for one face in one image.

Frames (docs/conventions.md): the fitted head is ``v_world = R(pose)·v_model`` and the camera
has identity rotation and translation ``translation`` (``X_cam = v_world + t``), intrinsics
``K`` (focal ``focal`` px, principal point at the image centre). Exported meshes are in model
space (head pose removed: +Y up, +Z out of the face, metres) so they can be animated directly;
``render()``/``landmarks2d()`` use the posed head and the camera.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from face3d.errors import BadInputError

if TYPE_CHECKING:
    from concurrent.futures import Future

    import trimesh

    from face3d.detail.sdf import SDFResult
    from face3d.io.mesh import Material, MorphTargets
    from face3d.models.model import MorphableModel
    from face3d.pipeline import DetailStage, FitStage, SdfStage, TextureStage
    from face3d.renderers import PerspectiveCamera

PARAMS_FORMAT = "face3d-reconstruction"
PARAMS_VERSION = 1
FITTED_EXPRESSION = "fittedExpression"
"""Name of the GLB morph target holding the photo's fitted expression (resting weight 1)."""


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """No cyclic garbage collection inside the block (back on after it, if it was on). The writers
    make thousands of short-lived containers, all freed by reference counting; collections they
    trigger would scan every long-lived object of the process (0.1-0.3 s a full pass in a warm process)."""
    import gc

    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def _rotation(pose: np.ndarray) -> np.ndarray:
    from face3d.models.model import axis_angle_to_matrix

    return axis_angle_to_matrix(torch.as_tensor(pose, dtype=torch.float64).reshape(1, 3))[0].numpy()


def euler_degrees(pose: np.ndarray) -> tuple[float, float, float]:
    """(pitch, yaw, roll) in degrees about X, Y, Z (R = Rz·Ry·Rx) of an axis-angle pose (3,)."""
    from scipy.spatial.transform import Rotation

    z, y, x = Rotation.from_rotvec(np.asarray(pose, np.float64)).as_euler("ZYX", degrees=True)
    return float(x), float(y), float(z)


class FittedFace:
    """The fitted face's geometry, computed from its parameters: the methods that
    :class:`~face3d.pipeline.FitStage` (what the stages read) and :class:`Reconstruction` (the
    result) share. Expects the attributes model_name, shape, expression, pose, translation, focal,
    image_size, albedo_coeffs, albedo_gain, albedo_smooth, sh and image (documented on :class:`Reconstruction`)."""

    model_name: str
    focal: float
    image_size: tuple[int, int]
    translation: np.ndarray
    pose: np.ndarray
    expression: np.ndarray
    shape: np.ndarray
    albedo_smooth: np.ndarray
    albedo_gain: np.ndarray
    albedo_coeffs: np.ndarray
    sh: np.ndarray
    image: np.ndarray | None

    def _model(self) -> MorphableModel:
        raise NotImplementedError

    def photo(self) -> np.ndarray:
        """The photo (H, W, 3) float32 in [0, 1]."""
        if self.image is None:
            raise BadInputError("texture/detail stages need the photo; this face has none (loaded from disk?)")
        return self.image.astype(np.float32) / 255

    @property
    def K(self) -> np.ndarray:
        """OpenCV intrinsics (3, 3) in pixels of the input image."""
        H, W = self.image_size
        return np.array([[self.focal, 0, W / 2], [0, self.focal, H / 2], [0, 0, 1]], np.float64)

    @property
    def rotation(self) -> np.ndarray:
        """Head rotation matrix (3, 3)."""
        return _rotation(self.pose)

    def camera(self) -> PerspectiveCamera:
        """The fitted camera as a batch-1 ``face3d.renderers.PerspectiveCamera`` (identity rotation)."""
        from face3d import renderers

        H, W = self.image_size
        return renderers.PerspectiveCamera(K=torch.as_tensor(self.K, dtype=torch.float32)[None], R=torch.eye(3)[None],
                                           t=torch.as_tensor(self.translation, dtype=torch.float32)[None], width=W, height=H)

    def vertices(self, posed: bool = False) -> np.ndarray:
        """Fitted vertices (V, 3) metres: model space, or with the head pose applied (``posed``).

        The last model run is remembered (the texture, detail and save stages of a photo each ask for
        the same shape and expression); every call returns a new array."""
        global _LAST_VERTICES
        m = self._model()
        shape, expression = np.asarray(self.shape, np.float32), np.asarray(self.expression, np.float32)
        key = (shape.shape, shape.tobytes(), expression.shape, expression.tobytes())
        hit = _LAST_VERTICES
        if hit is None or hit[0] is not m or hit[1] != key:
            with torch.no_grad():
                v = m(shape=torch.from_numpy(shape.copy())[None], expression=torch.from_numpy(expression.copy())[None])[0].numpy()
            hit = _LAST_VERTICES = (m, key, v)
        return hit[2] @ self.rotation.T if posed else hit[2].copy()

    def vertex_albedo(self) -> np.ndarray:
        """Per-vertex albedo (V, 3) in [0, 1] of the model's albedo space (without one: uniform
        0.6 × gain times the fitted smooth tone field, :mod:`face3d.fitting.smooth_albedo`)."""
        from face3d.fitting import smooth_albedo

        m = self._model()
        gain = np.asarray(self.albedo_gain, np.float32)
        with torch.no_grad():
            if m.per_vertex_albedo:
                c = torch.as_tensor(self.albedo_coeffs)[None].float() if m.n_albedo else None
                a = m.albedo(c)[0].numpy()
            else:
                t = torch.full((1, m.n_vertices, 3), 0.6)
                if len(self.albedo_smooth):
                    coeffs = torch.as_tensor(np.asarray(self.albedo_smooth, np.float32))[None]
                    t = smooth_albedo.apply_smooth_albedo(t, smooth_albedo.smooth_albedo_basis(m), coeffs)
                a = t[0].numpy()
        return np.clip(a * gain, 0, 1)

    def landmarks2d(self, set: str = "ibug68") -> np.ndarray:
        """The fitted model's landmarks of ``set`` projected into the input image: (N, 2) pixels."""
        m = self._model()
        if set not in m.embeddings:
            raise BadInputError(f"model '{m.name}' has no '{set}' landmark embedding (has {sorted(m.embeddings)})")
        v = torch.as_tensor(self.vertices(posed=True), dtype=torch.float32)[None]
        return self.project(m.landmarks(v, set)[0])

    def project(self, points: np.ndarray | torch.Tensor) -> np.ndarray:
        """Points (N, 3) metres in the posed model frame (that of ``vertices(posed=True)``), moved by the
        fitted translation and projected with the fitted camera into the input image: (N, 2) pixels."""
        from face3d.fitting.camera import intrinsics, project

        p = torch.as_tensor(points, dtype=torch.float32)[None] + torch.as_tensor(self.translation, dtype=torch.float32)
        H, W = self.image_size
        return project(p, intrinsics(torch.tensor([self.focal], dtype=torch.float32), float(W), float(H)))[0].numpy()


_LAST_VERTICES: tuple[MorphableModel, tuple[object, ...], np.ndarray] | None = None  # FittedFace.vertices' last (model, key, vertices)


@dataclass
class Reconstruction(FittedFace):
    """One fitted face.

    shape (K_id,), expression (K_exp,) (names in ``expression_names``), pose (3,) axis-angle,
    translation (3,) metres, focal (px), image_size (H, W), sh (9, 3) SH irradiance
    coefficients, albedo_coeffs (K_alb,), albedo_gain (3,), albedo_smooth (K_s, 3) (the smooth
    tone field of models without an albedo space, :mod:`face3d.fitting.smooth_albedo`; (0, 3)
    otherwise); landmark_targets (L, 2) px in the
    ``landmark_set`` scheme, the points the fit followed (MediaPipe's 478, or on a profile handed
    to the learned regressor its 68, set 'ibug68'); landmark_error: mean distance between the
    target and fitted landmarks divided by the outer-eye-corner distance; timings: seconds per stage; losses:
    final loss per stage. Optional products: texture (R, R, 3) de-lit albedo in [0, 1],
    normal_map (R, R, 3) tangent space in [0, 1], displacement (R, R) metres along the normal,
    vertices_detailed (V, 3) model space. image (H, W, 3) uint8: the photo (not serialised).
    """

    model_name: str
    model_version: str
    shape: np.ndarray = field(repr=False)
    expression: np.ndarray = field(repr=False)
    pose: np.ndarray
    translation: np.ndarray
    focal: float
    image_size: tuple[int, int]
    sh: np.ndarray = field(repr=False)
    albedo_coeffs: np.ndarray = field(repr=False)
    albedo_gain: np.ndarray
    landmark_set: str
    landmark_targets: np.ndarray = field(repr=False)
    landmark_error: float
    expression_names: list[str] = field(default_factory=list, repr=False)
    albedo_smooth: np.ndarray = field(default_factory=lambda: np.zeros((0, 3), np.float32), repr=False)
    timings: dict[str, float] = field(default_factory=dict)
    losses: dict[str, float] = field(default_factory=dict)
    source: str | None = None
    frame: int | None = None
    time: float | None = None
    face_index: int = 0
    notes: list[str] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)
    image: np.ndarray | None = field(default=None, repr=False)
    texture: np.ndarray | None = field(default=None, repr=False)
    normal_map: np.ndarray | None = field(default=None, repr=False)
    displacement: np.ndarray | None = field(default=None, repr=False)
    vertices_detailed: np.ndarray | None = field(default=None, repr=False)
    sdf: SDFResult | None = field(default=None, repr=False)
    model: MorphableModel | None = field(default=None, repr=False)

    @classmethod
    def assemble(cls, fit: FitStage, texture: TextureStage | None = None, detail: DetailStage | None = None,
                 sdf: SdfStage | None = None, *, settings: dict[str, object], notes: list[str], total: float) -> Reconstruction:
        """The result of one face, built once from its stage values: the fit's parameters, the
        texture, the shape-from-shading detail, and the SDF's detail replacing it where that ran
        and did not fall back; ``notes`` are appended after the fit's and the SDF's, ``total``
        (seconds) is the whole call's time."""
        from face3d.pipeline import FitStage

        names = {f.name for f in fields(cls)} & {f.name for f in fields(FitStage)}
        kw: dict[str, Any] = {k: getattr(fit, k) for k in names}
        kw.update(expression_names=list(fit.expression_names), timings=dict(fit.timings), losses=dict(fit.losses), notes=list(fit.notes))
        if texture is not None:
            kw.update(texture=texture.texture)
            kw["timings"]["texture"] = texture.seconds
        if detail is not None:
            kw.update(displacement=detail.displacement, normal_map=detail.normal_map, vertices_detailed=detail.vertices_detailed)
            kw["timings"]["detail"] = detail.seconds
        if sdf is not None:
            kw["sdf"] = sdf.result
            kw["notes"] += [sdf.result.warning] if sdf.result.fell_back else []
            kw.update({k: v for k, v in (("vertices_detailed", sdf.vertices_detailed), ("displacement", sdf.displacement),
                                         ("normal_map", sdf.normal_map)) if v is not None})
            kw["timings"].update(sdf.timings)
        kw["timings"]["total"] = total
        kw["notes"] += notes
        return cls(settings=dict(settings), **kw)

    # ---------------------------------------------------------------- geometry
    def _model(self) -> MorphableModel:
        if self.model is None:
            from face3d.models import load_model

            self.model = load_model(self.model_name)
        return self.model

    def mesh(self, detailed: bool = False) -> trimesh.Trimesh:
        """The fitted mesh as a ``trimesh.Trimesh`` (model space, metres, per-vertex albedo colours).

        ``detailed`` uses the displaced vertices when the detail stage ran.
        """
        import trimesh

        m = self._model()
        v = self.vertices_detailed if detailed and self.vertices_detailed is not None else self.vertices()
        colours = np.concatenate([np.round(self.vertex_albedo() * 255), np.full((m.n_vertices, 1), 255)], 1).astype(np.uint8)
        return trimesh.Trimesh(vertices=v, faces=m.faces.numpy(), vertex_colors=colours, process=False)

    def render(self, background: str = "image", textured: bool = True) -> np.ndarray:
        """The fitted face rendered with its lighting into the input camera: (H, W, 3) float32 in [0, 1].

        Uses the baked texture when there is one (and ``textured``), else the per-vertex albedo. ``background``:
        'image' (composited over the photo; black without one) or 'black'.
        """
        if background not in ("image", "black"):
            raise BadInputError(f"argument 'background': expected 'image' or 'black', got {background!r}")
        H, W = self.image_size
        photo = background == "image" and self.image is not None
        out = self.image.astype(np.float32) / 255 if photo else np.zeros((H, W, 3), np.float32)  # type: ignore[union-attr]
        (y0, y1, x0, x1), face = self._render_window(textured, out)
        out[y0:y1, x0:x1] = face
        return out

    def _render_window(self, textured: bool, bg: np.ndarray | None,
                       colours: np.ndarray | None = None) -> tuple[tuple[int, int, int, int], np.ndarray]:
        """The face rendered into the input camera and composited over ``bg`` (H, W, 3) float32
        (None: the photo, or black) only in the rectangle (y0, y1, x0, x1) that holds it
        (:meth:`face_window`; outside it the alpha is 0 and the render is the background, exactly):
        the rectangle and its pixels (y1-y0, x1-x0, 3) float32. ``colours``: :meth:`vertex_albedo`
        when the caller has it."""
        from face3d import renderers

        m = self._model()
        y0, y1, x0, x1 = self.face_window()
        v = torch.as_tensor(self.vertices(posed=True), dtype=torch.float32)[None]
        sh = torch.as_tensor(self.sh, dtype=torch.float32)[None]
        if textured and self.texture is not None and m.uvs is not None:
            from face3d.fitting.stages import texture_face_mask

            keep = torch.as_tensor(texture_face_mask(m))
            mesh = renderers.Mesh(v, m.faces[keep], m.uvs, m.uv_faces[keep])  # type: ignore[index]
            out = renderers.render_mesh(mesh, self.camera(), texture=torch.as_tensor(self.texture, dtype=torch.float32), sh=sh)
        else:
            vc = torch.as_tensor(self.vertex_albedo() if colours is None else colours)[None]
            out = renderers.render_mesh(renderers.Mesh(v, m.faces), self.camera(), vertex_colors=vc, sh=sh)
        img = out.image[0, y0:y1, x0:x1].clamp(0, 1).numpy()
        a = out.alpha[0, y0:y1, x0:x1].numpy()
        if bg is not None:
            under = bg[y0:y1, x0:x1]
        elif self.image is not None:
            under = self.image[y0:y1, x0:x1].astype(np.float32) / 255
        else:
            under = np.zeros((y1 - y0, x1 - x0, 3), np.float32)
        return (y0, y1, x0, x1), (a * img + (1 - a) * under).astype(np.float32)

    def face_window(self, margin: int = 2) -> tuple[int, int, int, int]:
        """The pixel rectangle (y0, y1, x0, x1) (rows y0..y1-1, columns x0..x1-1) of the input image
        that holds every projected vertex of the fitted face with ``margin`` pixels to spare (the
        antialiasing of its outline reaches one pixel out), clipped to the image; the whole image
        when a vertex is not in front of the camera. Outside it a render of the face is empty."""
        H, W = self.image_size
        cam = self.camera()
        v = torch.as_tensor(self.vertices(posed=True), dtype=torch.float64)[None]
        d = cam.depth(v)[0].numpy()
        if not len(d) or d.min() <= 1e-6:
            return 0, H, 0, W
        pix = cam.project(v)[0].numpy()
        px, py = pix[:, 0], pix[:, 1]
        x0, x1 = int(np.floor(px.min())) - margin, int(np.ceil(px.max())) + margin
        y0, y1 = int(np.floor(py.min())) - margin, int(np.ceil(py.max())) + margin
        x0, x1, y0, y1 = max(x0, 0), min(x1, W), max(y0, 0), min(y1, H)
        if x1 <= x0 or y1 <= y0:  # wholly outside the image: one pixel, empty
            return 0, 1, 0, 1
        return y0, y1, x0, x1

    def overlay(self, colours: np.ndarray | None = None) -> np.ndarray:
        """The photo beside the fit (model albedo and fitted lighting, so the fitted shape shows)
        rendered over it: (H, 2W, 3) uint8. ``colours`` (V, 3): :meth:`vertex_albedo`, when the
        caller has it already (computed otherwise)."""
        H, W = self.image_size
        photo = self.image if self.image is not None else np.zeros((H, W, 3), np.uint8)
        (y0, y1, x0, x1), face = self._render_window(False, None, colours)
        fit = photo.copy()  # outside the face the render is the photo: round(p / 255 * 255) = p in float32
        fit[y0:y1, x0:x1] = np.round(face * 255).astype(np.uint8)
        return np.concatenate([photo, fit], 1)

    # ---------------------------------------------------------------- serialisation
    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable summary (everything but the images and the model)."""
        pitch, yaw, roll = euler_degrees(self.pose)
        return {
            "format": PARAMS_FORMAT, "format_version": PARAMS_VERSION,
            "model": {"name": self.model_name, "version": self.model_version,
                      "options": self.model.load_options if self.model is not None else {}},
            "source": self.source, "frame": self.frame, "time": self.time, "face_index": self.face_index,
            "image_size": {"height": int(self.image_size[0]), "width": int(self.image_size[1])},
            "shape": np.asarray(self.shape, float).tolist(),
            "expression": np.asarray(self.expression, float).tolist(), "expression_names": list(self.expression_names),
            "pose": {"axis_angle": np.asarray(self.pose, float).tolist(), "pitch_yaw_roll_deg": [pitch, yaw, roll]},
            "camera": {"model": "pinhole", "K": self.K.tolist(), "focal_px": float(self.focal), "R": np.eye(3).tolist(),
                       "t": np.asarray(self.translation, float).tolist(), "convention": "OpenGL camera (looks down -Z), pixels y down"},
            "lighting": {"type": "sh2", "coeffs": np.asarray(self.sh, float).tolist()},
            "albedo": {"coeffs": np.asarray(self.albedo_coeffs, float).tolist(), "gain": np.asarray(self.albedo_gain, float).tolist(),
                       "smooth_coeffs": np.asarray(self.albedo_smooth, float).tolist()},
            "landmarks": {"set": self.landmark_set, "error_interocular": float(self.landmark_error)},
            "timings_s": {k: float(v) for k, v in self.timings.items()},
            "losses": {k: float(v) for k, v in self.losses.items()},
            "notes": list(self.notes),
            "settings": self.settings,
        }

    def arkit_morphs(self) -> MorphTargets | None:
        """The fitted head's morph targets (a :class:`face3d.io.mesh.MorphTargets`), or None for a
        model without expressions: the 52 ARKit shapes in the fitted identity (``ARKIT_NAMES``
        order) and :data:`FITTED_EXPRESSION`, the photo's expression relative to neutral, at
        resting weight 1 (so the mesh at its resting weights is the fitted face).

        A model without ARKit shapes is retargeted from ICT-FaceKit; where that model cannot be
        loaded (not installed, offline), only :data:`FITTED_EXPRESSION` is written and ``notes``
        says why."""
        from face3d.animation import retarget
        from face3d.arkit import ARKIT_NAMES
        from face3d.errors import DownloadError, ModelFileError, ModelNotFoundError
        from face3d.io.mesh import MorphTargets

        m = self._model()
        if m.n_expression == 0:
            return None
        with torch.no_grad():
            neutral = m(shape=torch.as_tensor(self.shape)[None].float())[0].numpy()
        fitted = (self.vertices() - neutral)[None].astype(np.float32)
        try:
            shared = retarget.linear_arkit_deltas(m)  # the same read-only array for every photo of a linear model
            arkit = shared if shared is not None else retarget.arkit_deltas(m, self.shape)
        except (ModelNotFoundError, DownloadError, ModelFileError) as exc:
            note = f"GLB without ARKit shapes: retargeting '{m.name}' needs ICT-FaceKit ({exc})"
            if note not in self.notes:
                self.notes.append(note)
            return MorphTargets(names=(FITTED_EXPRESSION,), deltas=fitted, default=np.ones(1))
        deltas = np.concatenate([arkit, fitted]).astype(np.float32, copy=False)
        return MorphTargets(names=(*ARKIT_NAMES, FITTED_EXPRESSION), deltas=deltas, default=np.r_[np.zeros(52), 1.0], shared=shared)

    def save_animatable_glb(self, path: Path, vertices: np.ndarray | None = None) -> Path:
        """Write the GLB of the fitted head (``vertices`` (V, 3) model space, default the fitted
        ones) with the texture and normal map (or per-vertex albedo) and :meth:`arkit_morphs`: its
        base mesh has the neutral expression, the fitted one being the resting weight of
        :data:`FITTED_EXPRESSION`, so the head can be animated with ARKit weights at once."""
        return self._save_glb(path, self.vertices() if vertices is None else np.asarray(vertices), self._material(), self.arkit_morphs())

    def _material(self, colours: np.ndarray | None = None) -> Material:
        """The written meshes' material: the texture and normal map as uint8 (converted once for
        every file), or the per-vertex albedo (``colours``, computed when not given) without a texture."""
        from face3d.io import mesh as meshio
        from face3d.io.imagefile import to_uint8

        m = self._model()
        if self.texture is not None and m.uvs is not None and m.uv_faces is not None:
            normal = to_uint8(self.normal_map, "normal_map") if self.normal_map is not None else None
            return meshio.Material(to_uint8(self.texture, "texture"), normal)
        return meshio.Material(vertex_colors=self.vertex_albedo() if colours is None else colours)

    def _save_glb(self, path: Path, v: np.ndarray, material: Material, morphs: MorphTargets | None) -> Path:
        from face3d.io import mesh as meshio

        m = self._model()
        base = v - morphs.deltas[-1] if morphs is not None else v
        if material.texture is not None and m.uvs is not None and m.uv_faces is not None:
            return meshio.save_glb(path, base, m.faces.numpy(), m.uvs.numpy(), m.uv_faces.numpy(), material, morphs=morphs)
        return meshio.save_glb(path, base, m.faces.numpy(), material=material, morphs=morphs)

    def write_files(self, folder: Path) -> list[str]:
        """Write every output into an existing ``folder`` (each file atomically); returns the names.

        The PNGs are encoded on a second thread while the meshes are formatted (zlib releases the GIL)."""
        with _gc_paused():
            return self._write_files(Path(folder))

    def _write_files(self, folder: Path) -> list[str]:
        from face3d.io import mesh as meshio
        from face3d.io.atomic import write_bytes, write_text
        from face3d.io.imagefile import png_future, png_pool

        m = self._model()
        v = self.vertices_detailed if self.vertices_detailed is not None else self.vertices()
        faces = m.faces.numpy()
        colours = self.vertex_albedo()
        material = self._material(colours)
        morphs = self.arkit_morphs()  # shared by mesh.glb and mesh_sdf.glb
        textured = material.texture is not None
        with png_pool() as pool:
            if textured:  # started now; the OBJ and GLB writers take these encodings (no lookup by content)
                normal = png_future(material.normal_map, "normal_map", pool, memo=False) if material.normal_map is not None else None
                material = dataclasses.replace(material, texture=png_future(material.texture, "texture", pool, memo=False), normal_map=normal)
            pngs: dict[str, Future[bytes]] = {}
            if self.displacement is not None:
                d = np.array(self.displacement, np.float64)  # a copy: ((d / scale * 0.5 + 0.5) * 255).round() in place
                scale = float(max(d.max(), -d.min(), 1e-9))
                d /= scale
                d *= 0.5
                d += 0.5
                d *= 255
                pngs["displacement.png"] = png_future(np.rint(d, out=d).astype(np.uint8), "displacement", pool, memo=False)  # grayscale
            pngs["overlay.png"] = png_future(self.overlay(colours), "overlay", pool, photo=True, memo=False)
            written = []
            if textured:
                meshio.save_obj(folder / "mesh.obj", v, faces, m.uvs.numpy(), m.uv_faces.numpy(), material)  # type: ignore[union-attr]
                written += ["mesh.obj", "mesh.mtl", "albedo.png"] + (["normal.png"] if material.normal_map is not None else [])
            else:
                meshio.save_obj(folder / "mesh.obj", v, faces, material=material)
                written.append("mesh.obj")
            self._save_glb(folder / "mesh.glb", v, material, morphs)
            written.append("mesh.glb")
            meshio.save_ply(folder / "mesh.ply", v, faces, colors=colours)
            written.append("mesh.ply")
            info = self.to_dict()  # after the GLB: its morph targets may add a note
            if "displacement.png" in pngs:
                info["displacement"] = {"file": "displacement.png", "encoding": "metres = (value/255 - 0.5) * 2 * scale", "scale_m": scale}
                written.append("displacement.png")
            if self.sdf is not None:
                written += self._write_sdf(folder, info, faces, material, morphs)
            for name, fut in pngs.items():
                write_bytes(folder / name, fut.result())
        written.append("overlay.png")
        write_text(folder / "params.json", json.dumps(info, indent=1))
        written.append("params.json")
        return written

    def _write_sdf(self, folder: Path, info: dict[str, Any], faces: np.ndarray, material: Material,
                   morphs: MorphTargets | None) -> list[str]:
        """The implicit-SDF outputs: mesh_sdf.obj/.glb (3DMM topology with the SDF detail),
        sdf_raw.ply (watertight marching-cubes surface), sdf_face.ply (its face crop), sdf.pt
        (the residual network's state dict) and an ``sdf`` section in params.json."""
        from face3d.io import mesh as meshio
        from face3d.io.atomic import write_bytes

        res, m = self.sdf, self._model()
        if res is None:
            return []
        info["sdf"] = {"fell_back": bool(res.fell_back), "warning": res.warning, "timings_s": {k: float(v) for k, v in res.timings.items()},
                       "losses_first": res.log.losses[0] if res.log.losses else {}, "losses_last": res.log.losses[-1] if res.log.losses else {},
                       "iterations": len(res.log.losses)}
        if res.fell_back:
            return []
        v = res.vertices_detailed.numpy() @ self.rotation
        uvs = m.uvs.numpy() if m.uvs is not None else None
        uvf = m.uv_faces.numpy() if m.uv_faces is not None else None
        sdf_material = meshio.Material(material.texture, material.normal_map if material.texture is not None else self.normal_map, name="mesh_sdf")
        meshio.save_obj(folder / "mesh_sdf.obj", v, faces, uvs, uvf, sdf_material)
        self._save_glb(folder / "mesh_sdf.glb", v, material, morphs)
        out = ["mesh_sdf.obj", "mesh_sdf.glb"]
        for name, mesh in (("sdf_raw.ply", res.closed_mesh), ("sdf_face.ply", res.face_mesh)):
            if mesh is not None:
                meshio.save_ply(folder / name, np.asarray(mesh.vertices) @ self.rotation, np.asarray(mesh.faces))
                out.append(name)
        buf = io.BytesIO()
        torch.save({"state_dict": res.network.state_dict(), "radius": res.network.radius, "delta_scale": res.network.delta_scale}, buf)
        write_bytes(folder / "sdf.pt", buf.getvalue())
        return out + ["sdf.pt"]

    def save(self, folder: str | Path, overwrite: bool = False) -> Path:
        """Write mesh.obj/.mtl/albedo.png/normal.png/displacement.png, mesh.glb, mesh.ply,
        params.json and overlay.png into ``folder``.

        Files already in ``folder`` that face3d did not write are never touched (a name clash
        raises :class:`~face3d.errors.OutputError`); a previous result there is refused unless
        ``overwrite``, which replaces only that result's files. A failure leaves ``folder`` as it
        was (see :func:`face3d.io.atomic.output_dir`)."""
        from face3d.io.atomic import output_dir

        with output_dir(folder, overwrite=overwrite) as tmp:
            self.write_files(tmp)
        return Path(folder)


def write_many(recs: list[Reconstruction], folder: Path, kind: str = "photos") -> list[str]:
    """Write several reconstructions into the existing folder ``folder``: one sub-folder per item
    (``face_00``…, ``photo_00``…, or ``frame_0000``… for video) plus ``summary.json``; for video
    also ``animation.json`` (per-frame time, ARKit-named expression weights, pose, translation).
    Returns the names written at the top level."""
    with _gc_paused():
        return _write_many(recs, folder, kind)


def _write_many(recs: list[Reconstruction], folder: Path, kind: str) -> list[str]:
    from face3d.io.atomic import write_text

    if not recs:
        raise BadInputError("save_many: nothing to save")
    prefix = {"faces": "face_{:02d}", "photos": "photo_{:02d}", "frames": "frame_{:04d}"}.get(kind)
    if prefix is None:
        raise BadInputError(f"save_many: kind must be 'faces', 'photos' or 'frames', got {kind!r}")
    items = []
    for i, r in enumerate(recs):
        name = prefix.format(i)
        sub = folder / name
        sub.mkdir()
        if kind == "frames" and i > 0:
            write_text(sub / "params.json", json.dumps(r.to_dict(), indent=1))
        else:
            r.write_files(sub)
        items.append({"folder": name, "source": r.source, "frame": r.frame, "landmark_error": r.landmark_error})
    summary: dict[str, Any] = {"format": PARAMS_FORMAT + "-set", "kind": kind, "items": items}
    written = [prefix.format(i) for i in range(len(recs))]
    if kind == "frames":
        anim = {
            "format": "face3d-animation-params", "model": recs[0].model_name, "expression_names": recs[0].expression_names,
            "shape": np.asarray(recs[0].shape, float).tolist(),
            "frames": [{"time": r.time, "expression": np.asarray(r.expression, float).tolist(),
                        "pose": np.asarray(r.pose, float).tolist(), "translation": np.asarray(r.translation, float).tolist()} for r in recs],
        }
        write_text(folder / "animation.json", json.dumps(anim))
        written.append("animation.json")
    write_text(folder / "summary.json", json.dumps(summary, indent=1))
    return written + ["summary.json"]


def save_many(recs: list[Reconstruction], folder: str | Path, kind: str = "photos", overwrite: bool = False) -> Path:
    """Save several reconstructions into ``folder`` as :func:`write_many` lays them out, with the
    same rules as :meth:`Reconstruction.save` (other files kept, a previous result replaced only
    with ``overwrite``, nothing changed on failure)."""
    from face3d.io.atomic import output_dir

    if not recs:
        raise BadInputError("save_many: nothing to save")
    with output_dir(folder, overwrite=overwrite) as tmp:
        write_many(recs, tmp, kind)
    return Path(folder)


def interocular_error(pred: np.ndarray, target: np.ndarray, scheme: str) -> float:
    """Mean 2D landmark distance divided by the distance between the target's outer eye corners."""
    a, b = (33, 263) if scheme == "mediapipe478" else (36, 45)
    io = float(np.linalg.norm(target[a] - target[b]))
    if not math.isfinite(io) or io <= 0:
        return float("nan")
    return float(np.linalg.norm(pred - target, axis=1).mean() / io)
