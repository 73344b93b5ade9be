"""Animated glTF 2.0 export: one GLB with the avatar mesh, its albedo, ARKit morph targets and
an animation of the morph weights (and of the node rotation for head pose).

Layout: scene -> node "head" (mesh "face"; rotation animated when the animation has head pose).
The mesh has one primitive: POSITION (+ TEXCOORD_0 and a baseColor texture when the avatar has a
UV albedo, or COLOR_0 per-vertex albedo), uint32 indices, and 52 morph targets (POSITION deltas
in metres, ``ARKIT_NAMES`` order) named in ``mesh.extras.targetNames`` (the convention read by
Blender, three.js and Babylon). Vertices are split at UV seams (glTF attributes are per vertex).
glTF UVs have v = 0 at the top of the image, so the OBJ-convention v is flipped. The animation
"performance" has one LINEAR sampler for the weights (52 values per keyframe) and, with head pose,
one for the rotation (unit quaternions x, y, z, w). ``scene.extras``/``asset.extras`` note the audio
path, the frame rate and the source model. Axes follow glTF (+Y up, +Z forward, metres) — the
face3d convention, so no conversion is needed.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np

from face3d.arkit import ARKIT_NAMES
from face3d.errors import BadInputError

_FLOAT, _UINT = 5126, 5125
_ARRAY_BUFFER, _ELEMENT_ARRAY_BUFFER = 34962, 34963


class _Bin:
    """Accumulates aligned buffer views and accessors for a pygltflib document."""

    def __init__(self, gltf: Any) -> None:
        self.gltf = gltf
        self.chunks: list[bytes] = []
        self.size = 0

    def view(self, data: bytes, target: int | None = None) -> int:
        from pygltflib import BufferView

        pad = (-self.size) % 4
        if pad:
            self.chunks.append(b"\0" * pad)
            self.size += pad
        self.gltf.bufferViews.append(BufferView(buffer=0, byteOffset=self.size, byteLength=len(data), target=target))
        self.chunks.append(data)
        self.size += len(data)
        return len(self.gltf.bufferViews) - 1

    def accessor(self, arr: np.ndarray, kind: str, target: int | None = None, minmax: bool = False) -> int:
        from pygltflib import Accessor

        arr = np.ascontiguousarray(arr)
        ctype = _UINT if arr.dtype == np.uint32 else _FLOAT
        view = self.view(arr.tobytes(), target)
        flat = arr.reshape(arr.shape[0], -1)
        acc = Accessor(bufferView=view, componentType=ctype, count=int(arr.shape[0]), type=kind)
        if minmax:
            acc.min = [float(x) for x in flat.min(0)]
            acc.max = [float(x) for x in flat.max(0)]
        self.gltf.accessors.append(acc)
        return len(self.gltf.accessors) - 1


def _png(image: np.ndarray) -> bytes:
    from PIL import Image

    img = np.asarray(image)
    if img.dtype != np.uint8:
        img = (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(img[..., :3]).save(buf, format="PNG")
    return buf.getvalue()


def _split_seams(faces: np.ndarray, uv_faces: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unique (vertex, uv) corners: returns vertex ids (N,), uv ids (N,) and new faces (F, 3)."""
    key = faces.astype(np.int64).ravel() * (int(uv_faces.max()) + 1) + uv_faces.astype(np.int64).ravel()
    uniq, inv = np.unique(key, return_inverse=True)
    n_uv = int(uv_faces.max()) + 1
    return (uniq // n_uv).astype(np.int64), (uniq % n_uv).astype(np.int64), inv.reshape(-1, 3).astype(np.uint32)


def _quaternions(aa: np.ndarray) -> np.ndarray:
    from scipy.spatial.transform import Rotation

    q = Rotation.from_rotvec(np.asarray(aa, np.float64)).as_quat()  # x, y, z, w
    for i in range(1, len(q)):  # keep consecutive keys in the same hemisphere for smooth LINEAR slerp
        if np.dot(q[i], q[i - 1]) < 0:
            q[i] = -q[i]
    return q.astype(np.float32)


def write_animated_glb(anim: Any, avatar: Any, path: str | Path, targets: str = "all") -> Path:
    """Write ``anim`` on ``avatar`` (Avatar, model name/folder, or MorphableModel) to the GLB ``path``, atomically.

    ``targets``: 'all' writes the 52 ARKit morph targets; 'used' only those the animation moves
    (weights above 1e-4 somewhere) — smaller files, names still in ``extras.targetNames``.
    """
    import pygltflib as g

    from face3d.animation.avatar import load_avatar
    from face3d.animation.retarget import arkit_retargeting
    from face3d.io.atomic import atomic_path

    if anim.arkit is None:
        raise BadInputError("to_gltf: the animation has no ARKit weights (retarget it first)")
    if targets not in ("all", "used"):
        raise BadInputError(f"to_gltf: targets must be 'all' or 'used', got {targets!r}")
    av = load_avatar(avatar)
    model = av.model
    neutral = av.neutral()
    faces = model.faces.numpy()
    M = arkit_retargeting(model).matrix  # (52, K)
    basis = model.exp_basis.numpy().reshape(model.n_expression, -1)
    names = list(ARKIT_NAMES)
    keep = np.arange(52) if targets == "all" else np.flatnonzero(np.abs(anim.arkit).max(0) > 1e-4)
    deltas = (M[keep] @ basis).reshape(len(keep), -1, 3).astype(np.float32)
    weights = anim.arkit[:, keep]

    uvs = None
    if av.texture is not None and model.uvs is not None and model.uv_faces is not None:
        vid, uid, tri = _split_seams(faces, model.uv_faces.numpy())
        uvs = model.uvs.numpy()[uid].copy()
        uvs[:, 1] = 1.0 - uvs[:, 1]
    else:
        vid, tri = np.arange(neutral.shape[0]), faces.astype(np.uint32)
    pos = neutral[vid].astype(np.float32)

    gltf = g.GLTF2(asset=g.Asset(version="2.0", generator="face3d"))
    b = _Bin(gltf)
    attrs = g.Attributes(POSITION=b.accessor(pos, "VEC3", _ARRAY_BUFFER, minmax=True))
    material = None
    if uvs is not None:
        attrs.TEXCOORD_0 = b.accessor(uvs.astype(np.float32), "VEC2", _ARRAY_BUFFER)
        img_view = b.view(_png(av.texture))
        gltf.images.append(g.Image(bufferView=img_view, mimeType="image/png", name="albedo"))
        gltf.samplers.append(g.Sampler(magFilter=9729, minFilter=9987, wrapS=10497, wrapT=10497))
        gltf.textures.append(g.Texture(sampler=0, source=0))
        pbr = g.PbrMetallicRoughness(baseColorTexture=g.TextureInfo(index=0), metallicFactor=0.0, roughnessFactor=0.8)
        gltf.materials.append(g.Material(name="albedo", pbrMetallicRoughness=pbr))
        material = 0
    elif av.vertex_colors is not None:
        attrs.COLOR_0 = b.accessor(np.asarray(av.vertex_colors, np.float32)[vid], "VEC3", _ARRAY_BUFFER)
        gltf.materials.append(g.Material(name="albedo", pbrMetallicRoughness=g.PbrMetallicRoughness(metallicFactor=0.0, roughnessFactor=0.8)))
        material = 0
    idx = b.accessor(tri.reshape(-1).astype(np.uint32), "SCALAR", _ELEMENT_ARRAY_BUFFER, minmax=True)
    morph = [g.Attributes(POSITION=b.accessor(deltas[k][vid], "VEC3", _ARRAY_BUFFER, minmax=True)) for k in range(len(keep))]
    prim = g.Primitive(attributes=attrs, indices=idx, material=material, targets=morph, mode=4)
    gltf.meshes.append(g.Mesh(name="face", primitives=[prim], weights=[0.0] * len(keep),
                              extras={"targetNames": [names[k] for k in keep]}))
    gltf.nodes.append(g.Node(name="head", mesh=0))
    extras = {"fps": anim.fps, "model": model.name, "avatar": av.name, "audio": anim.audio, "frames": anim.n_frames}
    gltf.scenes.append(g.Scene(name="face3d", nodes=[0], extras=extras))
    gltf.scene = 0
    gltf.asset.extras = {"audio": anim.audio}

    times = (np.arange(anim.n_frames) / anim.fps).astype(np.float32)
    t_acc = b.accessor(times, "SCALAR", minmax=True)
    samplers = [g.AnimationSampler(input=t_acc, output=b.accessor(weights.reshape(-1).astype(np.float32), "SCALAR"), interpolation="LINEAR")]
    channels = [g.AnimationChannel(sampler=0, target=g.AnimationChannelTarget(node=0, path="weights"))]
    if anim.head_pose is not None:
        samplers.append(g.AnimationSampler(input=t_acc, output=b.accessor(_quaternions(anim.head_pose), "VEC4"), interpolation="LINEAR"))
        channels.append(g.AnimationChannel(sampler=1, target=g.AnimationChannelTarget(node=0, path="rotation")))
    gltf.animations.append(g.Animation(name="performance", samplers=samplers, channels=channels, extras={"audio": anim.audio}))

    blob = b"".join(b.chunks)
    blob += b"\0" * ((-len(blob)) % 4)
    gltf.buffers.append(g.Buffer(byteLength=len(blob)))
    gltf.set_binary_blob(blob)
    p = Path(path)
    if p.suffix.lower() != ".glb":
        raise BadInputError(f"to_gltf: output must end in .glb, got {p}")
    with atomic_path(p) as tmp:
        gltf.save_binary(str(tmp))
    return p
