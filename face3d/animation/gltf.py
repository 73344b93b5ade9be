"""Animated glTF 2.0 export: one GLB with the avatar mesh, its albedo (and normal map), ARKit
morph targets and an animation of the morph weights (and of the node rotation for head pose).

Written by :func:`face3d.io.mesh.save_glb` (the writer of every face3d GLB): scene -> node
"head" (rotation animated when the animation has head pose) -> one primitive with POSITION,
NORMAL, TEXCOORD_0 + TANGENT and the textures when the avatar has a UV albedo (TANGENT with a
normal map), or COLOR_0 per-vertex albedo; the ARKit morph targets (POSITION deltas in metres,
sparse, ``ARKIT_NAMES`` order) named in ``mesh.extras.targetNames``. The animation "performance"
has one LINEAR sampler for the weights and, with head pose, one for the rotation (unit
quaternions x, y, z, w). ``scene.extras`` notes the audio path, the frame rate and the source
model; the audio path is also in ``asset.extras`` and the animation's extras.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from face3d.arkit import ARKIT_NAMES
from face3d.errors import BadInputError

if TYPE_CHECKING:
    from face3d.animation.animation import Animation
    from face3d.animation.avatar import AvatarSpec


def _quaternions(aa: np.ndarray) -> np.ndarray:
    from scipy.spatial.transform import Rotation

    q = Rotation.from_rotvec(np.asarray(aa, np.float64)).as_quat()  # x, y, z, w
    for i in range(1, len(q)):  # keep consecutive keys in the same hemisphere for smooth LINEAR slerp
        if np.dot(q[i], q[i - 1]) < 0:
            q[i] = -q[i]
    return q.astype(np.float32)


def write_animated_glb(anim: Animation, avatar: AvatarSpec, path: str | Path, targets: str = "all") -> Path:
    """Write ``anim`` on ``avatar`` (Avatar, model name/folder, or MorphableModel) to the GLB ``path``, atomically.

    ``targets``: 'all' writes the 52 ARKit morph targets; 'used' only those the animation moves
    (weights above 1e-4 somewhere) — smaller files, names still in ``extras.targetNames``.
    """
    from face3d.animation.avatar import load_avatar
    from face3d.animation.retarget import arkit_deltas
    from face3d.io.mesh import Material, MorphTargets, save_glb

    if anim.arkit is None:
        raise BadInputError("to_gltf: the animation has no ARKit weights (retarget it first)")
    if targets not in ("all", "used"):
        raise BadInputError(f"to_gltf: targets must be 'all' or 'used', got {targets!r}")
    p = Path(path)
    if p.suffix.lower() != ".glb":
        raise BadInputError(f"to_gltf: output must end in .glb, got {p}")
    av = load_avatar(avatar)
    model = av.model
    keep = np.arange(52) if targets == "all" else np.flatnonzero(np.abs(anim.arkit).max(0) > 1e-4)
    extras = {"fps": anim.fps, "model": model.name, "avatar": av.name, "audio": anim.audio, "frames": anim.n_frames}
    morphs = MorphTargets(names=tuple(ARKIT_NAMES[k] for k in keep), deltas=arkit_deltas(model, av.shape)[keep],
                          frames=np.asarray(anim.arkit)[:, keep], fps=anim.fps,
                          rotation=_quaternions(anim.head_pose) if anim.head_pose is not None else None, extras=extras)
    if av.texture is not None and model.uvs is not None and model.uv_faces is not None:
        return save_glb(p, av.neutral(), model.faces.numpy(), model.uvs.numpy(), model.uv_faces.numpy(), Material(av.texture, av.normal_map),
                        name="head", morphs=morphs)
    colors = None if av.vertex_colors is None else np.asarray(av.vertex_colors, np.float32)
    return save_glb(p, av.neutral(), model.faces.numpy(), material=Material(vertex_colors=colors), name="head", morphs=morphs)
