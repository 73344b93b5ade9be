"""Mesh and image file writers/readers: round trips, GLB validity, atomicity, corrupt files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from face3d.errors import BadInputError, FileFormatError, ImageError, ShapeError
from face3d.io.imagefile import load_displacement, load_png, save_exr_or_png16, save_png
from face3d.io.mesh import Material, load_mesh, save_glb, save_obj, save_ply, split_seams
from face3d.testing import validate_gltf


def cube_with_seams():
    """A unit-ish cube (metres) with a cross-shaped UV unwrap: 8 vertices, 14 UVs, 12 triangles."""
    v = np.array([[x, y, z] for x in (-0.05, 0.05) for y in (-0.05, 0.05) for z in (-0.05, 0.05)], float)
    quads = [(0, 1, 3, 2), (4, 6, 7, 5), (0, 4, 5, 1), (2, 3, 7, 6), (0, 2, 6, 4), (1, 5, 7, 3)]
    faces = []
    for a, b, c, d in quads:
        faces += [(a, b, c), (a, c, d)]
    faces = np.array(faces, np.int64)
    rng = np.random.default_rng(1)
    uvs = rng.uniform(0.05, 0.95, size=(14, 2))
    uv_faces = rng.integers(0, 14, size=faces.shape)
    return v, faces, uvs, uv_faces


def corners(v, f):
    return v[f]


def test_obj_round_trip_with_textures(tmp_path: Path):
    v, f, t, tf = cube_with_seams()
    albedo = np.random.default_rng(0).uniform(size=(16, 16, 3))
    normal = np.full((8, 8, 3), 0.5)
    normal[..., 2] = 1.0
    path = save_obj(tmp_path / "out dir é" / "mesh.obj", v, f, t, tf, Material(albedo, normal))
    assert {p.name for p in path.parent.iterdir()} == {"mesh.obj", "mesh.mtl", "albedo.png", "normal.png"}
    m = load_mesh(path)
    np.testing.assert_allclose(corners(m.vertices, m.faces), corners(v, f), atol=1e-7)
    np.testing.assert_allclose(corners(m.uvs, m.uv_faces), corners(t, tf), atol=1e-7)
    np.testing.assert_allclose(m.texture, albedo, atol=0.5 / 255 + 1e-6)
    np.testing.assert_allclose(m.normal_map, normal, atol=0.5 / 255 + 1e-6)
    mtl = (path.parent / "mesh.mtl").read_text()
    assert "map_Kd albedo.png" in mtl and "norm normal.png" in mtl



def test_material_names_the_obj_files_and_a_glb_reads_png_paths(tmp_path: Path):
    v, f, t, tf = cube_with_seams()
    albedo = np.random.default_rng(2).uniform(size=(8, 8, 3))
    path = save_obj(tmp_path / "a" / "m.obj", v, f, t, tf, Material(albedo, name="skin", texture_file="skin.png"))
    assert "newmtl skin" in (path.parent / "m.mtl").read_text() and "usemtl skin" in path.read_text()
    assert {p.name for p in path.parent.iterdir()} == {"m.obj", "m.mtl", "skin.png"}
    g = load_mesh(save_glb(tmp_path / "m.glb", v, f, t, tf, Material(texture=path.parent / "skin.png")))
    np.testing.assert_allclose(g.texture, albedo, atol=0.5 / 255 + 1e-6)


def test_obj_vertex_colours_and_plain(tmp_path: Path):
    v, f, _, _ = cube_with_seams()
    cols = np.linspace(0, 1, 24).reshape(8, 3)
    m = load_mesh(save_obj(tmp_path / "c.obj", v, f, material=Material(vertex_colors=cols)))
    np.testing.assert_allclose(m.colors, cols, atol=1e-5)
    assert m.uvs is None and not (tmp_path / "c.mtl").exists()


def test_ply_round_trip(tmp_path: Path):
    v, f, _, _ = cube_with_seams()
    cols = np.random.default_rng(0).uniform(size=(8, 3))
    m = load_mesh(save_ply(tmp_path / "m.ply", v, f, colors=cols))
    np.testing.assert_allclose(m.vertices, v, atol=1e-7)
    np.testing.assert_array_equal(m.faces, f)
    np.testing.assert_allclose(m.colors, cols, atol=0.5 / 255 + 1e-6)
    m2 = load_mesh(save_ply(tmp_path / "n.ply", v, f))
    assert m2.colors is None and m2.vertices.shape == (8, 3)


def test_glb_round_trip_split_seams_and_flip_v(tmp_path: Path):
    import pygltflib
    import trimesh

    v, f, t, tf = cube_with_seams()
    albedo = np.random.default_rng(0).uniform(size=(16, 16, 3))
    normal = np.full((16, 16, 3), 0.5)
    path = save_glb(tmp_path / "m.glb", v, f, t, tf, Material(albedo, normal, np.full((8, 3), 0.25)))
    g = pygltflib.GLTF2().load(str(path))
    prim = g.meshes[0].primitives[0]
    mat = g.materials[prim.material]
    assert mat.pbrMetallicRoughness.baseColorTexture is not None and mat.normalTexture is not None
    n_split = len(np.unique(np.stack([f.ravel(), tf.ravel()], 1), axis=0))
    assert g.accessors[prim.attributes.POSITION].count == n_split
    # glTF stores v flipped (v down): read the raw accessor and compare to 1 - v
    m = load_mesh(path)
    np.testing.assert_allclose(corners(m.vertices, m.faces), corners(v, f), atol=1e-7)
    np.testing.assert_allclose(corners(m.uvs, m.uv_faces), corners(t, tf), atol=1e-6)
    np.testing.assert_allclose(m.texture, albedo, atol=0.5 / 255 + 1e-6)
    np.testing.assert_allclose(m.colors, 0.25, atol=1e-6)
    scene = trimesh.load(path)
    tm = next(iter(scene.geometry.values()))
    np.testing.assert_allclose(np.sort(tm.vertices, axis=0), np.sort(v[split_seams(f, tf)[0]], axis=0), atol=1e-6)
    raw_uv = np.asarray(tm.visual.uv)  # trimesh flips glTF v back to OBJ convention
    np.testing.assert_allclose(np.sort(raw_uv[:, 1]), np.sort(t[split_seams(f, tf)[1], 1]), atol=1e-6)


def test_glb_passes_khronos_validator(tmp_path: Path):
    v, f, t, tf = cube_with_seams()
    path = save_glb(tmp_path / "m.glb", v, f, t, tf, Material(np.full((8, 8, 3), 0.7), np.full((8, 8, 3), 0.5)))
    issues = validate_gltf(path)["issues"]
    assert issues["numErrors"] == 0, issues["messages"]
    assert issues["numWarnings"] == 0, issues["messages"]  # tangents are supplied for the normal map


def test_glb_tangents_follow_uv_directions():
    from face3d.io.mesh import vertex_tangents_np

    # a square in the xy plane, facing +z; u grows along +x, v along +y (then along -y: mirrored)
    v = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0]], float)
    f = np.array([[0, 1, 2], [0, 2, 3]])
    n = np.tile([0.0, 0.0, 1.0], (4, 1))
    t = vertex_tangents_np(v, f, v[:, :2], n)
    np.testing.assert_allclose(t, np.tile([1.0, 0.0, 0.0, 1.0], (4, 1)), atol=1e-12)
    flipped = np.stack([v[:, 0], 1.0 - v[:, 1]], 1)
    t2 = vertex_tangents_np(v, f, flipped, n)
    np.testing.assert_allclose(t2[:, 3], -1.0)


def test_png_and_displacement_round_trip(tmp_path: Path):
    img = np.random.default_rng(0).uniform(size=(9, 7, 3)).astype(np.float32)
    back = load_png(save_png(tmp_path / "a.png", img))
    np.testing.assert_allclose(back, img, atol=0.5 / 255 + 1e-6)
    disp = np.random.default_rng(1).normal(scale=0.001, size=(32, 32))
    info = save_exr_or_png16(tmp_path / "d.exr", disp)
    assert info.path.suffix == ".png" and info.path.exists()
    rec = load_displacement(info.path)
    assert np.abs(rec - disp).max() <= info.scale / 65535 * 0.5 + 1e-12
    assert info.offset == pytest.approx(disp.min())


def test_corrupt_and_unsupported_files(tmp_path: Path):
    bad = tmp_path / "bad.glb"
    bad.write_bytes(b"glTF\x02\x00\x00\x00garbage")
    with pytest.raises(FileFormatError, match="bad.glb"):
        load_mesh(bad)
    (tmp_path / "x.obj").write_text("v 0 0 0\nf 1 2 3\n")
    with pytest.raises(FileFormatError, match="x.obj"):
        load_mesh(tmp_path / "x.obj")
    (tmp_path / "y.obj").write_bytes(b"\xff\xfe\x00binary")
    with pytest.raises(FileFormatError, match="y.obj"):
        load_mesh(tmp_path / "y.obj")
    (tmp_path / "z.ply").write_bytes(b"ply\nformat nonsense\n")
    with pytest.raises(FileFormatError, match="z.ply"):
        load_mesh(tmp_path / "z.ply")
    (tmp_path / "m.stl").write_text("solid")
    with pytest.raises(FileFormatError, match="unsupported"):
        load_mesh(tmp_path / "m.stl")
    with pytest.raises(FileFormatError, match="not found"):
        load_mesh(tmp_path / "missing.obj")
    (tmp_path / "p.png").write_bytes(b"\x89PNG broken")
    with pytest.raises(ImageError, match="p.png"):
        load_png(tmp_path / "p.png")


def test_bad_arguments_and_atomicity(tmp_path: Path):
    v, f, t, tf = cube_with_seams()
    with pytest.raises(ShapeError, match="vertices"):
        save_ply(tmp_path / "a.ply", v[:, :2], f)
    with pytest.raises(BadInputError, match="faces"):
        save_obj(tmp_path / "a.obj", v, f + 100)
    with pytest.raises(ShapeError, match="uv_faces"):
        save_glb(tmp_path / "a.glb", v, f, t, tf[:3])
    with pytest.raises(BadInputError, match="uvs"):
        save_obj(tmp_path / "a.obj", v, f, material=Material(np.zeros((4, 4, 3))))
    with pytest.raises(BadInputError, match="NaN"):
        save_png(tmp_path / "n.png", np.full((4, 4, 3), np.nan))
    save_ply(tmp_path / "keep.ply", v, f)
    before = (tmp_path / "keep.ply").read_bytes()
    with pytest.raises(ShapeError):
        save_ply(tmp_path / "keep.ply", v, f, colors=np.zeros((3, 3)))
    assert (tmp_path / "keep.ply").read_bytes() == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
