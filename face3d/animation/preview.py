"""Preview video: an animation rendered with ``face3d.renderers.render_mesh`` to MP4 (H.264 via the ffmpeg
bundled in imageio-ffmpeg) at the animation's frame rate, with its audio muxed in (AAC).

Camera: a pinhole looking down -Z at the face from ``distance`` metres in front of the mean face's
centre (30 degree vertical field of view). Shading: one frontal-top SH light plus ambient, on the
avatar's albedo (texture, vertex colours, or a neutral skin tone).
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from face3d.errors import BadInputError, FileFormatError

if TYPE_CHECKING:
    from face3d.animation.animation import Animation
    from face3d.animation.avatar import AvatarSpec

SKIN = (0.8, 0.62, 0.52)
FOV = 30.0  # vertical field of view, degrees


def _lighting(batch: int) -> torch.Tensor:
    from face3d.renderers.shading import ambient_sh

    sh = ambient_sh(0.8, batch)  # a de-lit albedo facing the light comes out near its own brightness
    sh[:, 2, :] += 0.35  # z: toward the viewer (band 1 ordering 1, y, z, x)
    sh[:, 1, :] += 0.15  # y: from above
    return sh


def render_frames(anim: Animation, avatar: AvatarSpec, size: int = 384, distance: float | None = None, batch: int = 8) -> np.ndarray:
    """(T, size, size, 3) uint8 frames of ``avatar`` playing ``anim`` (head pose included)."""
    from face3d import renderers

    from face3d.animation.avatar import load_avatar

    av = load_avatar(avatar)
    model = av.model
    ident = av.shape
    verts = anim.apply(model, identity=ident)
    neutral = torch.as_tensor(av.neutral())
    lo, hi = neutral.min(0).values, neutral.max(0).values
    if "face" in model.regions:
        face = neutral[model.regions["face"]]
        lo, hi = face.min(0).values, face.max(0).values
    centre = 0.5 * (lo + hi)
    extent = float((hi - lo)[:2].max())
    d = distance if distance is not None else extent / (2 * np.tan(np.radians(FOV / 2))) * 1.25
    K = renderers.perspective_from_fov(FOV, size, size)[None]
    R, t = renderers.look_at(centre + torch.tensor([0.0, 0.0, d]), centre)
    R, t = R.reshape(1, 3, 3), t.reshape(1, 3)
    kw: dict[str, Any] = {}
    textured = av.texture is not None and model.uvs is not None
    if textured:
        kw = dict(texture=torch.as_tensor(av.texture, dtype=torch.float32))
    elif av.vertex_colors is not None:
        kw = dict(vertex_colors=torch.as_tensor(av.vertex_colors, dtype=torch.float32))
    else:
        kw = dict(vertex_colors=torch.tensor(SKIN).expand(model.n_vertices, 3))
    frames = []
    with torch.no_grad():
        for s in range(0, verts.shape[0], batch):
            v = verts[s : s + batch]
            B = v.shape[0]
            cam = renderers.PerspectiveCamera(K=K.expand(B, 3, 3), R=R.expand(B, 3, 3), t=t.expand(B, 3), width=size, height=size)
            mesh = renderers.Mesh(v, model.faces, model.uvs, model.uv_faces) if textured else renderers.Mesh(v, model.faces)
            out = renderers.render_mesh(mesh, cam, sh=_lighting(B), background=1.0, **kw)
            frames.append((out.image.clamp(0, 1) * 255 + 0.5).to(torch.uint8).numpy())
    return np.concatenate(frames, 0)


def write_preview(anim: Animation, avatar: AvatarSpec, path: str | Path, size: int = 384, audio: str | Path | None = None) -> Path:
    """Render ``anim`` on ``avatar`` to the MP4 ``path`` (atomically) with ``audio`` (default ``anim.audio``) muxed in."""
    import imageio_ffmpeg

    from face3d.io.atomic import atomic_path

    p = Path(path)
    if p.suffix.lower() != ".mp4":
        raise BadInputError(f"preview: output must end in .mp4, got {p}")
    if size % 2:
        raise BadInputError(f"preview: size must be even for H.264, got {size}")
    sound = audio if audio is not None else anim.audio
    if sound is not None and not Path(sound).is_file():
        raise FileFormatError(sound, "audio file for the preview not found")
    frames = render_frames(anim, avatar, size)
    exe = imageio_ffmpeg.get_ffmpeg_exe()
    with atomic_path(p) as tmp:
        cmd = [exe, "-v", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{size}x{size}",
               "-r", f"{anim.fps:.6f}", "-i", "pipe:0"]
        if sound is not None:
            cmd += ["-i", str(sound), "-map", "0:v:0", "-map", "1:a:0", "-c:a", "aac", "-b:a", "128k", "-shortest"]
        cmd += ["-c:v", "libx264", "-pix_fmt", "yuv420p", "-preset", "veryfast", "-crf", "20", "-movflags", "+faststart",
                "-f", "mp4", str(tmp)]
        proc = subprocess.run(cmd, input=frames.tobytes(), capture_output=True)
        if proc.returncode != 0:
            raise FileFormatError(p, f"ffmpeg failed: {proc.stderr.decode(errors='replace').strip()[-300:]}")
    return p
