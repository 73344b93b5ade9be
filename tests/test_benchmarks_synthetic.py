"""The textured synthetic faces of benchmarks/reconstruct.py: a UV texture reaches the rendered
face pixels (lips painted red show up red at the projected lip landmarks), the smooth albedo does
not; the lighting rescale and the held-out test-photo rule give the documented values."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from face3d import renderers
from face3d.fitting.synthetic import random_face, render_face, scaled_sh, texture_vertex_albedo
from face3d.reconstruction import get_model

SKIN = np.array([0.60, 0.55, 0.45], np.float32)  # greener than the smooth albedo (g/r ≈ 0.72)
LIPS = np.array([0.60, 0.08, 0.10], np.float32)


@pytest.fixture(scope="module")
def ict():
    return get_model("ict")


def lip_texture(model, resolution: int = 128) -> np.ndarray:
    """A tiny UV texture (R, R, 3): skin everywhere, red discs around the UVs of the triangles
    that carry the model's iBUG-68 outer/inner lip landmarks (48–67)."""
    emb = model.embeddings["ibug68"]
    tris = emb.tri.numpy()[48:68]
    centres = model.uvs.numpy()[model.uv_faces.numpy()[tris]].mean(1)  # (20, 2) OBJ UVs
    tex = np.tile(SKIN, (resolution, resolution, 1))
    v, u = np.mgrid[0:resolution, 0:resolution]
    uu, vv = (u + 0.5) / resolution, 1.0 - (v + 0.5) / resolution  # row 0 = top = v 1
    for cu, cv in centres:
        tex[(uu - cu) ** 2 + (vv - cv) ** 2 < 0.02**2] = LIPS
    return tex


def chroma(image: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Green / red ratio of the pixels at ``points`` (N, 2) (independent of the shading)."""
    px = image[np.round(points[:, 1]).astype(int), np.round(points[:, 0]).astype(int)].astype(np.float64)
    return px[:, 1] / np.maximum(px[:, 0], 1.0)


def test_texture_reaches_face_pixels_and_smooth_albedo_does_not(ict):
    rng = np.random.default_rng(3)
    face = random_face(ict, rng, size=256, yaw_deg=10, pitch_deg=5, roll_deg=3)
    tex = lip_texture(ict)
    sh = renderers.ambient_sh(0.9)[0].numpy()
    albedo = texture_vertex_albedo(ict, tex, rng)
    textured = render_face(ict, dataclasses.replace(face, sh=sh, albedo=albedo), texture=tex, background=0.5)
    smooth = render_face(ict, dataclasses.replace(face, sh=sh), background=0.5)
    lips = face.landmarks68[[50, 51, 52, 57, 58, 61, 62, 63, 65, 66, 67]]  # lip centre-line points
    # cheeks: halfway between the jaw (2, 14) and the nose wings (31, 35)
    cheeks = 0.5 * (face.landmarks68[[2, 14]] + face.landmarks68[[31, 35]])
    t_lip, t_skin = np.median(chroma(textured.image, lips)), np.median(chroma(textured.image, cheeks))
    s_lip, s_skin = np.median(chroma(smooth.image, lips)), np.median(chroma(smooth.image, cheeks))
    assert t_skin == pytest.approx(SKIN[1] / SKIN[0], abs=0.05) and abs(t_skin - s_skin) > 0.1  # the texture's skin, not the smooth albedo
    assert t_lip < 0.35 and t_skin - t_lip > 0.3  # the red lips of the texture
    assert abs(s_lip - s_skin) < 0.08  # the smooth albedo has no lips
    # same geometry: identical coverage, only the colours differ
    assert ((textured.image != 0.5 * 255).any(-1) == (smooth.image != 0.5 * 255).any(-1)).mean() > 0.99
    # eyeballs get sclera/iris colours, the neck the texture's median skin
    sclera = ict.regions["sclera_left"].numpy()
    assert np.allclose(albedo[sclera], [0.78, 0.74, 0.70])
    assert np.allclose(albedo[ict.regions["head_and_neck"].numpy() & ~ict.regions["face"].numpy()], SKIN, atol=1e-3)


def test_scaled_sh_sets_the_ambient_level_and_adds_a_light():
    rng = np.random.default_rng(0)
    real = renderers.ambient_sh(np.array([2.0, 1.8, 1.6]))[0].numpy()
    real[2] += 0.3  # some light from the front in the fitted lighting
    out = scaled_sh(real, rng, ambient=(0.8, 0.8), directional=(0.2, 0.2))
    assert out[0].mean() * renderers.SH_C0 == pytest.approx(0.8, rel=1e-4)
    assert out[0, 0] / out[0, 2] == pytest.approx(2.0 / 1.6, rel=1e-4)  # colour kept
    added = out[1:4] - real[1:4] * (0.8 / (1.8))
    assert np.linalg.norm(added[:, 0]) == pytest.approx(0.2 / renderers.SH_C0 * 0.5, rel=1e-3)


def test_held_out_texture_photos_follow_the_documented_rule():
    from benchmarks.reconstruct import test_texture_photos

    photos = test_texture_photos()
    names = [p.name for p in photos]
    assert not any(n.startswith("aflw2000") for n in names)
    assert names[:3] == ["d3dfr_000125.jpg", "d3dfr_vd025.jpg", "deepface_couple.jpg"]
    assert names[-4:] == ["d3dfr_000031.jpg", "d3dfr_000114.jpg", "d3dfr_015316.jpg", "d3dfr_vd092.jpg"]
    assert len(names) == 26


def brute_force_closest(points: np.ndarray, vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Exact closest points on every triangle, the nearest kept: distances (N,), points (N, 3)."""
    import trimesh

    tri = vertices[faces]
    cp = trimesh.triangles.closest_point(np.repeat(tri[None], len(points), 0).reshape(-1, 3, 3), np.repeat(points, len(faces), 0))
    d = np.linalg.norm(cp.reshape(len(points), len(faces), 3) - points[:, None], axis=2)
    best = d.argmin(1)
    return d[np.arange(len(points)), best], cp.reshape(len(points), len(faces), 3)[np.arange(len(points)), best]


def test_point_to_surface_equals_brute_force_closest_points():
    import trimesh

    from benchmarks.reconstruct import point_to_surface

    sphere = trimesh.creation.icosphere(subdivisions=2, radius=0.1)
    v, f = np.asarray(sphere.vertices), np.asarray(sphere.faces)
    pts = np.random.default_rng(1).normal(0, 0.06, (150, 3))
    want_d, want_p = brute_force_closest(pts, v, f)
    d, p = point_to_surface(pts, v, f)
    assert np.allclose(d, want_d, atol=1e-9) and np.allclose(p, want_p, atol=1e-9)
    half = f[::2].copy()  # another mesh with the same vertices: no stale adjacency from the first call
    d2, _ = point_to_surface(pts, v, half)
    assert np.allclose(d2, brute_force_closest(pts, v, half)[0], atol=1e-9) and (d2 > d + 1e-6).any()
