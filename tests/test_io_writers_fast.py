"""The faster writers keep their output: OBJ lines as np.savetxt writes them, PNGs encoded once per content,
GLB seams split as the pairwise np.unique did."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from face3d.io import imagefile
from face3d.io.imagefile import png_bytes
from face3d.io.mesh import _rows, load_mesh, save_obj, split_seams


@pytest.mark.parametrize("fmt,array", [
    ("v %.8g %.8g %.8g", np.random.default_rng(0).normal(size=(50, 3)) * [1e-3, 1.0, 1e5]),
    ("vt %.8g %.8g", np.random.default_rng(1).random((7, 2)).astype(np.float32)),
    ("f %d/%d %d/%d %d/%d", np.random.default_rng(2).integers(1, 10**6, (9, 6))),
    ("v %.8g %.8g %.8g %.6g %.6g %.6g", np.random.default_rng(3).random((4, 6))),
    ("f %d %d %d", np.zeros((0, 3), np.int64)),
])
def test_rows_are_the_lines_of_savetxt(fmt, array):
    buf = io.StringIO()
    np.savetxt(buf, array, fmt=fmt)
    assert _rows(array, fmt) == buf.getvalue()


def test_obj_round_trips_with_uvs(tmp_path):
    rng = np.random.default_rng(4)
    v = rng.normal(size=(6, 3))
    f = np.array([[0, 1, 2], [2, 3, 4], [4, 5, 0]])
    t = rng.random((6, 2))
    save_obj(tmp_path / "m.obj", v, f, t, f)
    text = (tmp_path / "m.obj").read_text()
    assert text.startswith("# face3d OBJ (metres, +Y up)\nv ") and text.endswith("\n") and text.count("\nf ") == 3
    m = load_mesh(tmp_path / "m.obj")
    np.testing.assert_allclose(m.vertices, v, rtol=1e-7, atol=1e-9)
    np.testing.assert_array_equal(m.faces, f)


def test_png_bytes_encode_once_per_content_and_decode_to_the_pixels():
    rng = np.random.default_rng(5)
    img = rng.random((64, 48, 3)).astype(np.float32)
    first = png_bytes(img)
    assert png_bytes(img.copy()) is first  # the same content: the memo's bytes
    with Image.open(io.BytesIO(first)) as im:
        got = np.asarray(im)
    np.testing.assert_array_equal(got, np.round(img * 255).astype(np.uint8))
    other = img.copy()
    other[0, 0, 0] = 1.0 - other[0, 0, 0]
    assert png_bytes(other) != first  # one texel changed: encoded anew
    for k in range(imagefile._PNG_MEMO_SIZE + 2):  # the memo stays small
        png_bytes(np.full((4, 4, 3), k / 20, np.float32))
    assert len(imagefile._PNG_MEMO) <= imagefile._PNG_MEMO_SIZE


def test_png_compress_level_trades_size_for_time_only():
    img = (np.random.default_rng(6).random((32, 32, 3)) * 40).astype(np.uint8)
    levels = {}
    for level, strategy in ((1, None), (imagefile.PNG_COMPRESS_LEVEL, None), (9, None), (imagefile.PNG_COMPRESS_LEVEL, imagefile.MAP_PNG_STRATEGY)):
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, format="PNG", compress_level=level, **({} if strategy is None else {"compress_type": strategy}))
        levels[level, strategy] = buf.getvalue()
        with Image.open(io.BytesIO(levels[level, strategy])) as im:
            assert np.array_equal(np.asarray(im), img)
    assert png_bytes(img, photo=True) == levels[imagefile.PNG_COMPRESS_LEVEL, None]
    assert png_bytes(img) == levels[imagefile.PNG_COMPRESS_LEVEL, imagefile.MAP_PNG_STRATEGY] != levels[imagefile.PNG_COMPRESS_LEVEL, None]


def test_maps_are_encoded_smaller_and_photos_as_before():
    """Run-length matches (the maps' strategy) beat level 3 on smooth texture-space maps; a photo
    keeps zlib's default strategy. The pixels come back either way."""
    yy, xx = np.mgrid[0:256, 0:256] / 256.0
    rng = np.random.default_rng(9)
    smooth = np.stack([0.5 + 0.3 * np.sin(6 * xx + 2 * yy), 0.5 + 0.2 * np.cos(5 * yy), 0.4 + 0.1 * xx], -1)
    smooth = np.clip(smooth + rng.normal(0, 0.01, smooth.shape), 0, 1)
    as_map, as_photo = png_bytes(smooth), png_bytes(smooth, photo=True)
    assert as_map != as_photo and len(as_map) < len(as_photo)
    for data in (as_map, as_photo):
        with Image.open(io.BytesIO(data)) as im:
            np.testing.assert_array_equal(np.asarray(im), np.round(smooth * 255).astype(np.uint8))


def test_split_seams_equals_the_unique_position_uv_pairs():
    rng = np.random.default_rng(5)
    faces = rng.integers(0, 40, (200, 3))
    uv_faces = np.where(rng.random((200, 3)) < 0.7, faces, rng.integers(0, 90, (200, 3)))  # mostly shared, some seams
    pairs = np.stack([faces.reshape(-1), uv_faces.reshape(-1)], 1)
    uniq, inverse = np.unique(pairs, axis=0, return_inverse=True)
    vi, ti, nf = split_seams(faces, uv_faces)
    assert np.array_equal(vi, uniq[:, 0]) and np.array_equal(ti, uniq[:, 1])
    assert np.array_equal(nf, inverse.reshape(-1, 3)) and nf.dtype == np.int64
    assert np.array_equal(vi[nf], faces) and np.array_equal(ti[nf], uv_faces)
    assert 40 < len(vi) < 600


def test_corner_sums_add_in_the_order_of_np_add_at():
    from face3d.io.mesh import corner_sums, vertex_normals_np, vertex_tangents_np

    rng = np.random.default_rng(12)
    faces = rng.integers(0, 50, (300, 3))
    for dtype in (np.float64, np.float32):  # float64 by np.bincount, others by np.add.at
        values = (rng.normal(size=(300, 3)) * 10.0 ** rng.integers(-6, 6, (300, 1))).astype(dtype)
        like = np.zeros((50, 3), dtype)
        want = np.zeros_like(like)
        for k in range(3):
            np.add.at(want, faces[:, k], values)
        got = corner_sums(faces, values, like)
        assert got.dtype == dtype and np.array_equal(got, want)
    v = rng.normal(size=(50, 3))
    n = vertex_normals_np(v, faces)
    np.testing.assert_allclose(np.linalg.norm(n, axis=1), 1.0, rtol=1e-12)
    t = vertex_tangents_np(v, faces, rng.random((50, 2)), n)
    assert t.shape == (50, 4) and np.all(np.abs(t[:, 3]) == 1.0) and np.abs((t[:, :3] * n).sum(1)).max() < 1e-9


def test_layout_rows_and_seams_are_remembered_by_content(tmp_path):
    from face3d.io import mesh as meshio

    rng = np.random.default_rng(13)
    faces = rng.integers(0, 40, (60, 3))
    uv_faces = rng.integers(0, 45, (60, 3))
    uvs = rng.random((45, 2))
    meshio._ROWS_MEMO.clear()
    first = meshio._layout_rows((faces, uv_faces), "f %d/%d %d/%d %d/%d")
    assert meshio._layout_rows((faces.copy(), uv_faces.copy()), "f %d/%d %d/%d %d/%d") is first  # remembered
    assert first == _rows(np.stack([faces + 1, uv_faces + 1], axis=2).reshape(60, 6), "f %d/%d %d/%d %d/%d")
    assert meshio._layout_rows((uvs,), "vt %.8g %.8g") == _rows(uvs, "vt %.8g %.8g")
    moved = faces.copy()
    moved[0, 0] = (moved[0, 0] + 1) % 40
    assert meshio._layout_rows((moved, uv_faces), "f %d/%d %d/%d %d/%d") != first  # other content: formatted anew
    nf = split_seams(faces, uv_faces)[2]
    nf[0, 0] = -5  # the caller's copy: the memo's arrays stay as they were
    assert np.array_equal(split_seams(faces, uv_faces)[2][0], np.unique(faces.reshape(-1) * 45 + uv_faces.reshape(-1), return_inverse=True)[1][:3])


def test_writers_take_a_png_being_encoded(tmp_path):
    """A Material may hold the future bytes of a PNG (png_future): the OBJ writes them as its texture
    file and the GLB embeds them, byte for byte as from the array; a non-RGB PNG is refused by the GLB."""
    from concurrent.futures import Future

    from face3d.errors import ShapeError
    from face3d.io.imagefile import png_channels, png_future, png_pool
    from face3d.io.mesh import Material, save_glb

    rng = np.random.default_rng(14)
    v = rng.normal(size=(6, 3))
    f = np.array([[0, 1, 2], [2, 3, 4], [4, 5, 0]])
    t = rng.random((6, 2))
    tex = rng.random((16, 16, 3)).astype(np.float32)
    imagefile._PNG_MEMO.clear()
    with png_pool(1) as pool:
        fut = png_future(tex, "texture", pool, memo=False)
        assert isinstance(fut, Future) and len(imagefile._PNG_MEMO) == 0  # not remembered
        save_obj(tmp_path / "a.obj", v, f, t, f, Material(fut))
        save_glb(tmp_path / "a.glb", v, f, t, f, Material(fut))
    save_obj(tmp_path / "b" / "b.obj", v, f, t, f, Material(tex))
    save_glb(tmp_path / "b.glb", v, f, t, f, Material(tex))
    assert (tmp_path / "albedo.png").read_bytes() == (tmp_path / "b" / "albedo.png").read_bytes() == fut.result()
    assert (tmp_path / "a.glb").read_bytes() == (tmp_path / "b.glb").read_bytes()
    assert png_channels(fut.result()) == 3 and png_channels(png_bytes(tex[..., 0])) == 1 and png_channels(b"not a png") == 0
    grey = png_future(tex[..., 0], memo=False)
    with pytest.raises(ShapeError, match="RGB PNG"):
        save_glb(tmp_path / "c.glb", v, f, t, f, Material(grey))
