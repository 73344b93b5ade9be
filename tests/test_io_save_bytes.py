"""The result writers' files, byte for byte: the SHA-256 of every file a small synthetic
reconstruction writes, as the writer before the speed-up (parent of the save26 branch) wrote them, except
for the texture-space maps, encoded with ``imagefile.MAP_PNG_STRATEGY`` since save26b (albedo.png, normal.png,
displacement.png and mesh.glb, which embeds two of them: same pixels, other bytes); displacement.png is
one grayscale channel since save26b (it was three equal RGB channels); mesh.glb's 52 ARKit morph targets
are the exact ``matrix @ exp_basis`` rounded once to float32 since save26c (they were a float32 difference of
two model runs: values within 6e-7 m, a few components on the other side of SPARSE_EPS; all else the same bytes).
A change of a digest is a change of an output format: say so in the commit and update the digest.
The overlay is the renderer's picture (checked against ``Reconstruction.overlay`` instead)."""

from __future__ import annotations

import hashlib
import io
import json

import numpy as np
import pytest
from PIL import Image

from face3d.io import imagefile
from face3d.io.imagefile import png_bytes, png_future, png_pool

DIGESTS = {
    True: {
        "albedo.png": "dc0d2c0537e473af1c527a1c6a2884dcaf8ee1ec5f8345a4b6540c95b64f8ae2",
        "displacement.png": "b8730eb23b6d18eca22aa1c0a4ec473ff0cb061bccdf65fc59d8479762c209c4",
        "mesh.glb": "f944c40267f4167ece0c03fe070b87d9804f4e7cc4804d47656e76f10f272b1c",
        "mesh.mtl": "47f3d09f516bebc9d11dabac84169af9ce72f5c8af04b720a1103b42d7ab8226",
        "mesh.obj": "10f993858b2ff77c64576069b42759a79192b2e8a351e6ae96570ed0dceb8730",
        "mesh.ply": "554332ff6adae49ac59b18533808661740cc44e895651325a24954daf558d22d",
        "normal.png": "5677e8e1c36ce4423fa654579d58112476ca66a9fd594aa6f3e13cee09986fe5",
        "params.json": "0eb38bba92134ee2215e5725ea0b62724e8d732cee37a8b8e7fa30afe8498810",
    },
    False: {
        "mesh.glb": "1e6768fae263e90ddc9993105c0ba9c01d15c69cc275ded5ab5f6026d0bdbb0f",
        "mesh.obj": "a1e32c81c8f814590c052f15a3ddf2565b650c65df6637c9e8add7faa0c4218d",
        "mesh.ply": "cf4a834828e6375f3aa25b36d64de2db595b6198499225071cd13eea7b32a72d",
        "params.json": "6522f701bbd482370269416e6afc2672c8b7ce901a6e12711f02db7242f5c150",
    },
}


def _reconstruction(textured: bool):
    """The basic model (it has ARKit shapes: no ICT needed) with a random fit, detail and textures."""
    import face3d
    from face3d.result import Reconstruction

    m = face3d.load_model("basic")
    rng = np.random.default_rng(26)
    sh = np.zeros((9, 3), np.float32)
    sh[0] = 1.0
    extra = {}
    if textured:
        extra = {"texture": rng.random((48, 48, 3)).astype(np.float32), "normal_map": rng.random((48, 48, 3)).astype(np.float32),
                 "displacement": rng.normal(0, 1e-4, (48, 48))}
    rec = Reconstruction(model_name="basic", model_version=str(m.version), shape=rng.normal(0, 1, m.n_shape).astype(np.float32),
                         expression=rng.uniform(0, 0.6, m.n_expression).astype(np.float32), pose=np.array([0.1, -0.2, 0.05], np.float32),
                         translation=np.array([0, 0, -0.6], np.float32), focal=120.0, image_size=(64, 64), sh=sh,
                         albedo_coeffs=rng.normal(0, 0.5, m.n_albedo).astype(np.float32), albedo_gain=np.array([1.0, 0.9, 0.8], np.float32),
                         landmark_set="ibug68", landmark_targets=np.zeros((68, 2), np.float32), landmark_error=0.01,
                         expression_names=list(m.exp_names), timings={"fit": 1.0}, model=m,
                         image=(rng.random((64, 64, 3)) * 255).astype(np.uint8), **extra)
    if textured:
        rec.vertices_detailed = rec.vertices() + rng.normal(0, 1e-4, (m.n_vertices, 3)).astype(np.float32)
    return rec


#: The PNG encoder the PNG digests were recorded with (Pillow and its zlib): another encoder may write
#: other bytes for the same pixels, so there the PNGs are checked by their pixels only.
RECORDED_PNG_ENCODER = ("13.0.0", "1.2.13")


def _png_encoder() -> tuple[str, str]:
    import PIL
    from PIL import features

    return PIL.__version__, str(features.version("zlib"))


def _digests(folder) -> dict[str, str]:
    same_encoder = _png_encoder() == RECORDED_PNG_ENCODER
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())
            if p.name != "overlay.png" and (same_encoder or p.suffix != ".png")}


@pytest.mark.parametrize("textured", [True, False])
def test_written_files_are_byte_identical_to_the_previous_writer(tmp_path, textured):
    import gc

    imagefile._PNG_MEMO.clear()
    rec = _reconstruction(textured)
    if not textured:
        gc.disable()  # the writer pauses the garbage collector and leaves it as it found it
    try:
        names = rec.write_files(tmp_path)
        assert gc.isenabled() == textured
    finally:
        gc.enable()
    assert sorted(names) == sorted(p.name for p in tmp_path.iterdir())
    want = {k: v for k, v in DIGESTS[textured].items() if _png_encoder() == RECORDED_PNG_ENCODER or not k.endswith(".png")}
    assert _digests(tmp_path) == want
    if textured:  # the pixels, whatever the encoder
        for name, arr in (("albedo.png", rec.texture), ("normal.png", rec.normal_map)):
            with Image.open(tmp_path / name) as im:
                np.testing.assert_array_equal(np.asarray(im), np.round(np.clip(arr, 0, 1) * 255).astype(np.uint8))
    with Image.open(tmp_path / "overlay.png") as im:
        np.testing.assert_array_equal(np.asarray(im), rec.overlay())
    info = json.loads((tmp_path / "params.json").read_text())
    assert ("displacement" in info) == textured
    if textured:  # one grayscale channel, decoded as params.json says
        with Image.open(tmp_path / "displacement.png") as im:
            assert im.mode == "L"
            metres = (np.asarray(im) / 255 - 0.5) * 2 * info["displacement"]["scale_m"]
        np.testing.assert_allclose(metres, rec.displacement, rtol=0, atol=info["displacement"]["scale_m"] / 255)


def test_png_future_on_a_pool_gives_the_bytes_of_png_bytes():
    rng = np.random.default_rng(7)
    images = [rng.random((40, 30, 3)).astype(np.float32) for _ in range(3)]
    imagefile._PNG_MEMO.clear()
    with png_pool(2) as pool:
        assert pool is not None
        futures = [png_future(a, "img", pool) for a in images]
        assert png_future(images[0].copy(), "img", pool) is futures[0]  # the same content: the same encoding
    encoded = [f.result() for f in futures]
    imagefile._PNG_MEMO.clear()
    assert encoded == [png_bytes(a) for a in images]
    with Image.open(io.BytesIO(encoded[1])) as im:
        np.testing.assert_array_equal(np.asarray(im), np.round(images[1] * 255).astype(np.uint8))


def test_png_pool_of_no_workers_encodes_at_once():
    with png_pool(0) as pool:
        assert pool is None
        fut = png_future(np.zeros((4, 5), np.uint8), pool=pool)
        assert fut.done() and fut.result().startswith(b"\x89PNG")


def test_png_future_checks_the_shape_before_starting():
    from face3d.errors import ShapeError

    with png_pool(1) as pool, pytest.raises(ShapeError, match="bad"):
        png_future(np.zeros((4, 5, 2), np.uint8), "bad", pool)


def test_float32_morph_deltas_are_thresholded_as_their_float64_values(tmp_path):
    from face3d.io.mesh import SPARSE_EPS, MorphTargets, load_mesh, save_glb

    rng = np.random.default_rng(8)
    v = rng.normal(0, 0.05, (40, 3))
    f = np.array([[i, i + 1, i + 2] for i in range(38)])
    e32 = np.float32(SPARSE_EPS)  # values on both sides of the threshold, as float32 can hold them
    edge = [np.nextafter(e32, np.float32(0)), e32, np.nextafter(e32, np.float32(1)), -e32, np.float32(0)]
    deltas = rng.normal(0, 1e-5, (3, 40, 3)).astype(np.float32)
    deltas[0, :5, 0] = edge
    deltas[1] = 0.0
    paths = []
    for dt in (np.float32, np.float64):
        morphs = MorphTargets(names=("a", "b", "c"), deltas=deltas.astype(dt))
        paths.append(save_glb(tmp_path / f"{np.dtype(dt).name}.glb", v, f, morphs=morphs))
    assert paths[0].read_bytes() == paths[1].read_bytes()
    back = load_mesh(paths[0]).morph_deltas
    expect = np.where(np.abs(deltas.astype(np.float64)) > SPARSE_EPS, deltas, 0.0)
    np.testing.assert_array_equal(back, expect)
    assert back[0, 1, 0] == 0.0 and back[0, 2, 0] > SPARSE_EPS  # float32(1e-5) is below 1e-5; the next one above


def test_vertices_are_run_once_per_shape_and_expression():
    """FittedFace.vertices remembers its last model run: the same array values for the same shape and
    expression (a new array each call), the model's own output after either changes."""
    import torch

    rec = _reconstruction(False)
    m = rec.model
    first = rec.vertices()
    again = rec.vertices()
    assert again is not first and np.array_equal(again, first)
    again[:] = 0.0  # the caller's copy: the remembered run stays
    np.testing.assert_array_equal(rec.vertices(), first)
    np.testing.assert_array_equal(rec.vertices(posed=True), first @ rec.rotation.T)
    rec.expression = rec.expression.copy()
    rec.expression[0] += 0.5
    with torch.no_grad():
        want = m(shape=torch.as_tensor(rec.shape)[None].float(), expression=torch.as_tensor(rec.expression)[None].float())[0].numpy()
    got = rec.vertices()
    assert not np.array_equal(got, first) and np.array_equal(got, want)
