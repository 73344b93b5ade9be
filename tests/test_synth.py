"""Synthetic face generator, shards, landmark regressor (face3d.synth)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import face3d
from face3d.errors import BadInputError, FileFormatError
from face3d.fitting.camera import project
from face3d.synth.generator import FaceSynthesizer, SynthConfig, render_model
from face3d.landmarks.regressor import (FLIP68, LandmarkNet, LandmarkRegressor, RegressorConfig, RegressorOutput, crop_image,
                                    gaussian_nll, normalise_images, square_box, to_normalised)
from face3d.synth.shards import read_shard, sample_rng, write_shard
from face3d.synth.sources import MixedBackgrounds, PhotoBackgrounds, procedural_background


@pytest.fixture(scope="module")
def ict():
    return face3d.load_model("ict")


@pytest.fixture(scope="module")
def synth(ict):
    return FaceSynthesizer(ict, SynthConfig(crop_size=96), backgrounds=MixedBackgrounds(PhotoBackgrounds.skimage_samples()))


def test_labels_are_the_projected_landmark_vertices(synth):
    m = synth.model
    for i in range(3):
        s = synth.sample(sample_rng(7, i))
        assert s.image.shape == (96, 96, 3) and s.image.dtype == np.uint8
        with torch.no_grad():
            v = m(shape=torch.as_tensor(s.shape)[None], expression=torch.as_tensor(s.expression)[None],
                  pose=torch.as_tensor(s.pose)[None]) + torch.as_tensor(s.translation)
            lm = project(m.landmarks(v, "ibug68"), torch.as_tensor(s.K)[None])[0].numpy()
        np.testing.assert_allclose(s.landmarks68, lm, atol=1e-3)
        np.testing.assert_allclose(s.landmarks68_3d, m.landmarks(v, "ibug68")[0].numpy(), atol=1e-6)
        # the crop frames the face: every label inside the crop, the box is 1.15-1.6 x the point box
        ext = (s.landmarks68.max(0) - s.landmarks68.min(0)).max()
        assert 96 / 1.6 - 1 < ext < 96 / 1.15 + 1
        assert 20 <= s.focal_mm <= 200


def test_labels_sit_on_the_rendered_face(synth):
    """The rendered depth at a visible label equals the label's own depth (renderer and labels agree)."""
    from face3d import renderers

    s = synth.sample(sample_rng(3, 0), yaw_deg=(0, 0), pitch_deg=(0, 0), occluder_prob=0.0)
    m = synth.model
    with torch.no_grad():
        v = m(shape=torch.as_tensor(s.shape)[None], expression=torch.as_tensor(s.expression)[None],
              pose=torch.as_tensor(s.pose)[None]) + torch.as_tensor(s.translation)
        cam = renderers.PerspectiveCamera(K=torch.as_tensor(s.K)[None], width=96, height=96, near=0.05, far=20.0)
        depth = renderers.render_mesh(renderers.Mesh(v, m.faces), cam).depth[0, ..., 0].numpy()
    inner = [30, 36, 45, 48, 54, 8]  # nose tip, eye corners, mouth corners, chin
    for i in inner:
        x, y = np.floor(s.landmarks68[i]).astype(int)
        assert s.visible68[i]
        assert abs(depth[y, x] - (-s.landmarks68_3d[i, 2])) < 0.01


@pytest.mark.parametrize("yaw", [80.0, -80.0])
def test_profile_hides_the_far_jaw(synth, yaw):
    s = synth.sample(sample_rng(11, 0), yaw_deg=(yaw, yaw), pitch_deg=(0, 0), roll_deg=(0, 0), occluder_prob=0.0)
    # +yaw turns the face toward image right: the subject's left jaw (iBUG 9-16) goes behind the head
    far, near = (slice(10, 17), slice(0, 7)) if yaw > 0 else (slice(0, 7), slice(10, 17))
    assert s.visible68[far].sum() <= 1
    assert s.visible68[near].sum() >= 6
    # the far points are still labelled at their 3D position: they project onto the face, not off it
    assert np.all((s.landmarks68 >= 0) & (s.landmarks68 < 96))


def test_frontal_face_is_mostly_visible(synth):
    s = synth.sample(sample_rng(12, 0), yaw_deg=(0, 0), pitch_deg=(0, 0), roll_deg=(0, 0))
    assert s.visible68[17:].all()


def test_shards_are_deterministic_by_seed(synth, tmp_path):
    a = read_shard(write_shard(tmp_path / "a.npz", synth, 2, seed=5))
    b = read_shard(write_shard(tmp_path / "b.npz", synth, 2, seed=5))
    c = read_shard(write_shard(tmp_path / "c.npz", synth, 2, seed=6))
    for k in ("images", "landmarks68", "visible68", "shape", "expression", "pose", "K"):
        np.testing.assert_array_equal(a[k], b[k])
    assert a["images"].shape == (2, 96, 96, 3) and a["landmarks68"].shape == (2, 68, 2) and a["visible68"].dtype == bool
    assert not np.array_equal(a["images"], c["images"])
    assert "landmarks478" not in a  # ICT has no mediapipe478 embedding yet


def test_shards_cli_yaw_range(tmp_path):
    """``--yaw-deg 55,90`` draws only heads turned that far (the pose is stored per sample)."""
    from face3d.synth.shards import main

    assert main(["--out", str(tmp_path), "--shards", "1", "--n", "3", "--seed", "7", "--model", "basic", "--crop-size", "64",
                 "--backgrounds", "", "--yaw-deg", "55,90"]) == 0
    yaw = read_shard(tmp_path / "shard_00700000.npz")["euler_deg"][:, 1]
    assert yaw.shape == (3,) and np.all((yaw >= 55) & (yaw <= 90)), yaw
    with pytest.raises(BadInputError, match="--yaw-deg"):
        main(["--out", str(tmp_path), "--model", "basic", "--yaw-deg", "55"])


def test_bad_inputs_raise_typed_errors(ict, tmp_path):
    with pytest.raises(BadInputError, match="yaw_deg"):
        SynthConfig(yaw_deg=(10, -10))
    no_lm = render_model(ict)
    no_lm.embeddings.pop("ibug68")
    with pytest.raises(BadInputError, match="ibug68"):
        FaceSynthesizer(no_lm)
    (tmp_path / "x.npz").write_bytes(b"not an npz")
    with pytest.raises(FileFormatError, match="x.npz"):
        read_shard(tmp_path / "x.npz")
    with pytest.raises(BadInputError, match="no background photos"):
        PhotoBackgrounds(str(tmp_path))


def test_procedural_background_range_and_determinism():
    a = procedural_background(np.random.default_rng(1), 40)
    b = procedural_background(np.random.default_rng(1), 40)
    assert a.shape == (40, 40, 3) and a.dtype == np.float32 and 0 <= a.min() and a.max() <= 1
    np.testing.assert_array_equal(a, b)
    assert a.std() > 0.01


def test_flip68_mirrors_the_model_landmarks(ict):
    assert sorted(FLIP68) == list(range(68)) and np.array_equal(FLIP68[FLIP68], np.arange(68))
    lm = ict.landmarks(ict.template[None], "ibug68")[0].numpy()
    mirrored = lm[FLIP68] * np.array([-1, 1, 1])
    assert np.median(np.linalg.norm(mirrored - lm, axis=1)) < 0.003  # ICT's template is near-symmetric


def test_regressor_forward_shapes_and_errors():
    net = LandmarkNet(RegressorConfig(width=0.5, input_size=64))
    out = net(torch.zeros(2, 3, 64, 64))
    assert isinstance(out, RegressorOutput)
    assert out.points.shape == (2, 68, 2) and out.log_var.shape == (2, 68)
    with pytest.raises(BadInputError):
        net(torch.zeros(2, 3, 96, 96))
    with pytest.raises(BadInputError, match="multiple of 32"):
        LandmarkNet(RegressorConfig(input_size=100))


def test_few_training_steps_reduce_the_loss(synth):
    torch.manual_seed(0)
    samples = [synth.sample(sample_rng(21, i), crop_size=64) for i in range(4)]
    x = normalise_images(np.stack([s.image for s in samples]))
    y = to_normalised(np.stack([s.landmarks68 for s in samples]), 64)
    net = LandmarkNet(RegressorConfig(width=0.5, input_size=64))
    opt = torch.optim.Adam(net.parameters(), 2e-3)
    losses = []
    for _ in range(25):
        loss = gaussian_nll(net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 0.5


def test_gaussian_nll_value():
    out = RegressorOutput(points=torch.zeros(1, 68, 2), log_var=torch.full((1, 68), np.log(0.25)))
    target = torch.zeros(1, 68, 2)
    target[..., 0] = 1.0  # |d|^2 = 1, sigma^2 = 0.25 -> 0.5 * 4 + log 0.25
    assert float(gaussian_nll(out, target)) == pytest.approx(2.0 + np.log(0.25), abs=1e-5)


def test_predict_maps_crop_coordinates_back_to_the_image(tmp_path):
    net = LandmarkNet(RegressorConfig(width=0.5, input_size=64))
    with torch.no_grad():  # a net that always answers the crop centre, sigma = 0.1 normalised units
        net.head[-1].weight.zero_()
        net.head[-1].bias.copy_(torch.tensor([0.0, 0.0, 2 * np.log(0.1)]).repeat(68))
    from face3d.landmarks.regressor import checkpoint_state

    torch.save(checkpoint_state(net, box_scale=1.5), tmp_path / "w.pt")
    reg = LandmarkRegressor.load(tmp_path / "w.pt")
    img = np.zeros((200, 300, 3), np.uint8)
    res = reg.predict(img, np.array([100.0, 50.0, 180.0, 150.0]), refine=0, mirror=False)
    assert res.box == pytest.approx((65.0, 25.0, 150.0))
    np.testing.assert_allclose(res.landmarks, np.tile([140.0, 100.0], (68, 1)), atol=1e-4)
    np.testing.assert_allclose(res.sigma, 0.1 * 150 / 2, rtol=1e-4)
    both = reg.predict(img, np.array([100.0, 50.0, 180.0, 150.0]), refine=1, mirror=True)  # all points at one spot: keep the box
    assert both.box == pytest.approx(res.box)
    np.testing.assert_allclose(both.landmarks, res.landmarks, atol=1e-3)
    np.testing.assert_allclose(both.sigma, res.sigma / np.sqrt(2), rtol=1e-4)  # two equal readings
    with pytest.raises(FileFormatError):
        LandmarkRegressor.load(tmp_path / "missing.pt")


def test_crop_image_and_square_box():
    img = np.zeros((100, 100, 3), np.uint8)
    img[40:60, 20:40] = 255
    assert square_box(np.array([[20.0, 40.0], [40.0, 60.0]]), 2.0) == pytest.approx((10.0, 30.0, 40.0))
    crop = crop_image(img, (10.0, 30.0, 40.0), 40)
    assert crop.shape == (40, 40, 3)
    assert crop[20, 20].min() == 255 and crop[2, 2].max() == 0 and crop[10:30, 10:30].mean() > 250


def test_model_with_mediapipe_set_and_albedo_space_gets_478_labels(tmp_path):
    from face3d.synth.sources import ModelAlbedoSpace

    basic = face3d.load_model("basic")
    mean = ModelAlbedoSpace(scale=0.0).sample(basic, np.random.default_rng(0))
    np.testing.assert_allclose(mean, basic.albedo_mean.clamp(0, 1).numpy(), atol=1e-6)
    assert not np.allclose(ModelAlbedoSpace().sample(basic, np.random.default_rng(0)), mean, atol=1e-3)
    synth = FaceSynthesizer(basic, SynthConfig(crop_size=64), albedo=ModelAlbedoSpace())
    s = synth.sample(sample_rng(1, 0))
    with torch.no_grad():
        v = basic(shape=torch.as_tensor(s.shape)[None], expression=torch.as_tensor(s.expression)[None],
                  pose=torch.as_tensor(s.pose)[None]) + torch.as_tensor(s.translation)
        lm = project(basic.landmarks(v, "mediapipe478"), torch.as_tensor(s.K)[None])[0].numpy()
    assert s.landmarks478.shape == (478, 2)
    np.testing.assert_allclose(s.landmarks478, lm, atol=1e-3)
    shard = read_shard(write_shard(tmp_path / "b.npz", synth, 1, seed=1))
    np.testing.assert_allclose(shard["landmarks478"][0], s.landmarks478)


def test_texture_folder_albedo_renders_through_uvs(ict, tmp_path):
    from PIL import Image

    from face3d.synth.sources import TextureFolderAlbedo

    tex = np.zeros((32, 32, 3), np.uint8)
    tex[..., 0] = 230  # pure red texture
    Image.fromarray(tex).save(tmp_path / "red.png")
    src = TextureFolderAlbedo(str(tmp_path))
    alb = src.sample(ict, np.random.default_rng(0))
    assert alb.shape == (32, 32, 3) and alb[..., 1:].max() == 0 and 0.7 < alb[0, 0, 0] <= 1.0
    synth = FaceSynthesizer(ict, SynthConfig(crop_size=64, occluder_prob=0.0, jpeg_prob=0.0, blur_prob=0.0), albedo=src)
    s = synth.sample(sample_rng(2, 0), yaw_deg=(0, 0))
    x, y = np.floor(s.landmarks68[29]).astype(int)  # nose ridge
    r, g, b = s.image[y, x].astype(int)
    assert r > g + 40 and r > b + 40
    with pytest.raises(BadInputError, match="no .png"):
        TextureFolderAlbedo(str(tmp_path / "empty")).sample(ict, np.random.default_rng(0))


def test_expression_and_pose_sampling(ict):
    from face3d.synth.generator import euler_to_rotvec, sample_expression
    from face3d.models.model import axis_angle_to_matrix

    names = ict.exp_names
    for i in range(20):
        e = sample_expression(ict, np.random.default_rng(i), 8)
        assert e.min() >= 0 and e.max() <= 1 and (e > 0).sum() <= 9
        assert e[names.index("mouthClose")] <= e[names.index("jawOpen")] and e[names.index("tongueOut")] == 0
    R = axis_angle_to_matrix(torch.as_tensor(euler_to_rotvec(0.0, 90.0, 0.0)))
    np.testing.assert_allclose(R @ torch.tensor([0.0, 0.0, 1.0]), [1.0, 0.0, 0.0], atol=1e-6)  # +yaw turns the face to +X
    R = axis_angle_to_matrix(torch.as_tensor(euler_to_rotvec(30.0, 0.0, 0.0)))
    assert float((R @ torch.tensor([0.0, 0.0, 1.0]))[1]) == pytest.approx(-0.5, abs=1e-6)  # +pitch looks down


def test_occluders_change_only_their_mask():
    from face3d.synth.sources import add_occluders

    img = np.full((64, 64, 3), 0.5, np.float32)
    for seed in range(10):
        out, mask = add_occluders(img, np.random.default_rng(seed), max_count=3)
        changed = np.abs(out - img).max(-1) > 1e-6
        assert not (changed & ~mask).any()
        if mask.any():
            assert changed.sum() > 0.5 * mask.sum()


def test_shard_pool_batches_mirror_consistently(synth, tmp_path):
    from face3d.synth.train import ShardPool, nme

    (tmp_path / "s").mkdir()
    write_shard(tmp_path / "s" / "shard_00000001.npz", synth, 2, seed=9)
    pool = ShardPool(tmp_path / "s", capacity=10)
    assert pool.refresh() == 1 and len(pool) == 2 and pool.refresh() == 0
    x, y = pool.batch(np.random.default_rng(0), 16)
    assert x.shape == (16, 3, 96, 96) and y.shape == (16, 68, 2)
    raw = to_normalised(pool.points, 96)
    for k in range(16):  # every target is one sample's points, or its mirror (x negated, left/right swapped)
        ok = [torch.allclose(y[k], raw[j], atol=1e-5) for j in range(2)]
        mir = [torch.allclose(y[k], raw[j][FLIP68] * torch.tensor([-1.0, 1.0]), atol=1e-5) for j in range(2)]
        assert any(ok) or any(mir)
        if any(mir):  # the image was mirrored too
            j = mir.index(True)
            assert torch.allclose(x[k], normalise_images(pool.images[j:j + 1, :, ::-1].copy())[0])
    assert nme(y, y) == 0.0 and nme(y, y + torch.tensor([0.02, 0.0])) == pytest.approx(0.01, abs=1e-6)


@pytest.mark.slow
def test_training_script_checkpoints_resumes_and_stops(synth, tmp_path):
    from face3d.synth.train import main

    shards = tmp_path / "shards"
    shards.mkdir()
    small = FaceSynthesizer(synth.model, SynthConfig(crop_size=64))
    write_shard(shards / "shard_00000001.npz", small, 4, seed=3)
    write_shard(tmp_path / "run" / "val.npz", small, 2, seed=4)  # pre-made validation shard (skips a model load)
    args = ["--out", str(tmp_path / "run"), "--hours", "1", "--shards", str(shards), "--batch", "4", "--input-size", "64",
            "--log-seconds", "0", "--ckpt-minutes", "100"]
    assert main(args + ["--steps", "3"]) == 0
    ck = torch.load(tmp_path / "run" / "last.pt", weights_only=False)
    assert ck["step"] == 3
    assert main(args + ["--steps", "5"]) == 0  # resumes at step 3
    assert torch.load(tmp_path / "run" / "last.pt", weights_only=False)["step"] == 5
    log = (tmp_path / "run" / "train.log").read_text()
    assert "resumed from" in log and "at step 3" in log and "done: 5 steps" in log
    reg = LandmarkRegressor.load(tmp_path / "run" / "weights.pt")
    pts, sig = reg.predict_crops(read_shard(shards / "shard_00000001.npz")["images"][:2])
    assert pts.shape == (2, 68, 2) and sig.shape == (2, 68) and np.all(sig > 0)
    # the checkpoint loads as weights too (weights_only=True: no numpy scalars in the optimiser state)
    pts_ck, _ = LandmarkRegressor.load(tmp_path / "run" / "last.pt").predict_crops(read_shard(shards / "shard_00000001.npz")["images"][:2])
    np.testing.assert_allclose(pts_ck, pts, atol=1e-5)


@pytest.mark.slow
def test_training_with_background_writers_makes_its_own_data(synth, tmp_path):
    from face3d.synth.train import main

    write_shard(tmp_path / "run" / "val.npz", FaceSynthesizer(synth.model, SynthConfig(crop_size=64)), 2, seed=4)
    assert main(["--out", str(tmp_path / "run"), "--hours", "1", "--steps", "2", "--batch", "2", "--input-size", "64",
                 "--generate", "1", "--generate-n", "2", "--log-seconds", "0"]) == 0
    made = sorted((tmp_path / "run" / "shards").glob("shard_*.npz"))
    assert made and read_shard(made[0])["images"].shape == (2, 64, 64, 3)
    assert "done: 2 steps" in (tmp_path / "run" / "train.log").read_text()


def test_occluded_points_are_flagged(synth):
    none = [synth.sample(sample_rng(31, i), occluder_prob=0.0) for i in range(2)]
    assert not any(s.occluded68.any() for s in none)
    some = [synth.sample(sample_rng(32, i), occluder_prob=1.0) for i in range(8)]
    assert any(s.occluded68.any() for s in some)
    for s in some:  # flagged points are inside the crop
        assert np.all((s.landmarks68[s.occluded68] >= 0) & (s.landmarks68[s.occluded68] < 96))


def test_baked_textures_paint_the_face_and_keep_the_eyes(ict):
    """A two-part albedo (UV texture on the texture-owning triangles, per-vertex colours elsewhere):
    the nose ridge takes the texture's colour, the eyeball keeps its sclera/iris colours."""
    from face3d.synth.sources import BakedTextures, UVAlbedo

    tex = np.zeros((32, 32, 3), np.float32)
    tex[..., 2] = 0.9  # pure blue texture
    src = BakedTextures([tex], gain=(1.0, 1.0))
    alb = src.sample(ict, np.random.default_rng(0))
    assert isinstance(alb, UVAlbedo) and alb.texture.shape == (32, 32, 3) and alb.vertex.shape == (ict.n_vertices, 3)
    synth = FaceSynthesizer(ict, SynthConfig(crop_size=96, occluder_prob=0.0, jpeg_prob=0.0, blur_prob=0.0, noise_std=(0.0, 0.0)),
                            albedo=src)
    s = synth.sample(sample_rng(2, 1), yaw_deg=(0, 0), pitch_deg=(0, 0), roll_deg=(0, 0))  # (sample 0 is drawn grey-scale)
    x, y = np.floor(s.landmarks68[29]).astype(int)  # nose ridge
    r, g, b = s.image[y, x].astype(int)
    assert b > r + 40 and b > g + 40
    eye = np.floor(s.landmarks68[36:42].mean(0)).astype(int)  # between the eyelids: eyeball, not texture
    er, eg, eb = s.image[eye[1], eye[0]].astype(int)
    assert not (eb > er + 40 and eb > eg + 40)
    with pytest.raises(BadInputError, match="no textures"):
        BakedTextures([])


def test_mixed_albedo_draws_each_source_by_weight(ict):
    from face3d.synth.shards import make_albedo
    from face3d.synth.sources import MixedAlbedo, SmoothAlbedo

    class Const:
        def __init__(self, v):
            self.v = v

        def sample(self, model, rng):
            return np.full((1, 3), self.v, np.float32)

    mix = MixedAlbedo([Const(0.0), Const(1.0)], [1.0, 3.0])
    rng = np.random.default_rng(0)
    ones = np.mean([mix.sample(ict, rng)[0, 0] for _ in range(400)])
    assert 0.68 < ones < 0.82  # 3 of 4 expected
    assert np.all(MixedAlbedo([Const(0.5), Const(1.0)], [1.0, 0.0]).sample(ict, rng) == 0.5)
    with pytest.raises(BadInputError, match="weight"):
        MixedAlbedo([Const(0.0)], [1.0, 2.0])
    assert isinstance(make_albedo("smooth", ict), SmoothAlbedo)
    with pytest.raises(BadInputError, match="unknown albedo source 'paint'"):
        make_albedo("paint", ict)


@pytest.mark.slow
def test_training_prepares_a_fixed_data_set_first(synth, tmp_path):
    """--prepare writes its shards (fixed seeds, split over --workers) before the first step."""
    from face3d.synth.train import main

    write_shard(tmp_path / "run" / "val.npz", FaceSynthesizer(synth.model, SynthConfig(crop_size=64)), 2, seed=4)
    assert main(["--out", str(tmp_path / "run"), "--hours", "1", "--steps", "1", "--batch", "2", "--input-size", "64",
                 "--prepare", "3", "--workers", "2", "--generate-n", "2", "--log-seconds", "0", "--model", "basic"]) == 0
    made = sorted(p.name for p in (tmp_path / "run" / "shards").glob("shard_*.npz"))
    assert made == ["shard_100000000.npz", "shard_100000001.npz", "shard_100100000.npz", "shard_100100001.npz"]
    assert "preparing 3 shards" in (tmp_path / "run" / "train.log").read_text()


def test_augment_moves_points_with_the_image():
    """train.augment: with neutral ranges it changes nothing; a zoomed, shifted, rolled crop carries
    a bright spot to where its target point goes; grey-scale makes the channels equal."""
    from face3d.landmarks.regressor import MEAN, STD, to_normalised
    from face3d.synth.train import Augment, augment

    S = 64
    yy, xx = np.mgrid[0:S, 0:S] + 0.5
    spot = (20.0, 40.0)  # px (x, y)
    img = np.exp(-((xx - spot[0]) ** 2 + (yy - spot[1]) ** 2) / (2 * 1.5**2))
    x = (torch.as_tensor(np.repeat(img[None, None], 3, 1), dtype=torch.float32) * 0.8 + 0.1 - MEAN) / STD
    y = to_normalised(np.array([[spot]], np.float32), S)
    neutral = Augment(scale=(1, 1), shift=0.0, rotate_deg=0.0, gain=(1, 1), contrast=(1, 1), gamma=(1, 1), grey=0.0)
    x0, y0 = augment(x, y, np.random.default_rng(0), neutral)
    assert torch.allclose(x0, x, atol=1e-4) and torch.allclose(y0, y, atol=1e-6)
    moved = Augment(scale=(1.2, 1.2), shift=0.1, rotate_deg=30.0, gain=(1, 1), contrast=(1, 1), gamma=(1, 1), grey=1.0)
    for seed in range(3):
        x1, y1 = augment(x, y, np.random.default_rng(seed), moved)
        out = x1[0, 0].numpy()
        peak = np.unravel_index(np.argmax(out), out.shape)  # (row, col)
        want = ((y1[0, 0].numpy() + 1) / 2 * S)  # px (x, y)
        assert abs(peak[1] + 0.5 - want[0]) < 1.5 and abs(peak[0] + 0.5 - want[1]) < 1.5, (peak, want)
        assert torch.allclose(x1[:, 0], x1[:, 1]) and torch.allclose(x1[:, 1], x1[:, 2])


def test_hsv_matrix_values():
    """Identity at (0, 1, 1); grey stays grey under hue and saturation; saturation 0 gives the
    colour's luma in every channel; a hue turn keeps luma and chroma length; value scales."""
    from face3d.synth.sources import hsv_matrix

    np.testing.assert_allclose(hsv_matrix(0.0, 1.0, 1.0), np.eye(3), atol=1e-6)
    grey = np.array([0.4, 0.4, 0.4], np.float32)
    np.testing.assert_allclose(grey @ hsv_matrix(40.0, 1.7, 1.0).T, grey, atol=1e-5)
    c = np.array([0.8, 0.5, 0.3], np.float32)
    luma = 0.299 * 0.8 + 0.587 * 0.5 + 0.114 * 0.3
    np.testing.assert_allclose(c @ hsv_matrix(0.0, 0.0, 1.0).T, [luma] * 3, atol=1e-5)
    turned = c @ hsv_matrix(90.0, 1.0, 1.0).T
    assert abs(turned @ [0.299, 0.587, 0.114] - luma) < 1e-5 and not np.allclose(turned, c, atol=0.05)
    np.testing.assert_allclose(c @ hsv_matrix(0.0, 1.0, 0.5).T, c * 0.5, atol=1e-6)


def test_face_region_masks_sit_on_their_landmarks(ict):
    """Lips, brows, eye area and beard-shadow area contain the template vertex nearest to their
    own landmarks and not the nose tip; the soft UV masks peak near 1 and fade to 0."""
    from face3d.synth.sources import face_region_masks, uv_region_maps

    masks = face_region_masks(ict)
    v = ict.template.numpy()
    lm = ict.landmarks(ict.template[None], "ibug68")[0].numpy()
    near = lambda i: int(np.linalg.norm(v - lm[i], axis=1).argmin())  # noqa: E731
    for name, points in (("lips", (51, 57, 48, 54)), ("brows", (19, 24)), ("eyes", (37, 41, 44, 46)), ("beard", (8, 7, 9))):
        assert all(masks[name][near(i)] for i in points), name
        assert not masks[name][near(30)], name
    assert not (masks["beard"] & masks["lips"]).any()
    maps = uv_region_maps(ict, 128)
    for name, m in maps.masks.items():
        peak = 0.7 if name == "brows" else 0.95  # the brows are a few texels thin: the blur lowers their peak
        assert m.shape == (128, 128, 1) and m.max() > peak and m.min() == 0.0 and 0.0 < (m > 0.5).mean() < 0.3, name


def test_region_mix_swaps_regions_mirrors_and_recolours(ict):
    """With colour changes off: texels outside every region keep the base texture exactly, the
    lips take either texture's lips (a donor whose lips are dark); the mirror is an involution
    that moves most texels; with the default ranges the skin tone varies and stays in [0, 1]."""
    from face3d.synth.sources import REGION_COLOUR, RegionMixAlbedo, UVAlbedo, uv_region_maps

    R = 128
    maps = uv_region_maps(ict, R)
    skin = np.array([0.7, 0.5, 0.4], np.float32)
    plain = np.tile(skin, (R, R, 1))
    dark_lips = np.where(maps.masks["lips"] > 0.5, np.float32(0.1), plain).astype(np.float32)
    off = {k: (0.0, (1.0, 1.0), (1.0, 1.0)) for k in REGION_COLOUR}
    src = RegionMixAlbedo([plain, dark_lips], swap_prob=1.0, mirror_prob=0.0, colour=off, gain=(1.0, 1.0))
    outside = sum(maps.masks.values())[..., 0] == 0
    lip_core = maps.masks["lips"][..., 0] > 0.99
    assert lip_core.any()
    lips = []
    for i in range(16):
        alb = src.sample(ict, np.random.default_rng(i))
        assert isinstance(alb, UVAlbedo) and alb.texture.shape == (R, R, 3) and alb.vertex.shape == (ict.n_vertices, 3)
        np.testing.assert_allclose(alb.texture[outside], np.broadcast_to(skin, alb.texture[outside].shape), atol=1e-5)
        lips.append(alb.texture[lip_core].mean())
    lips = np.array(lips)
    assert ((lips < 0.15).sum() >= 3) and ((lips > 0.5).sum() >= 3)  # dark lips from the donor, plain ones from the other
    mirror = maps.mirror
    covered = np.flatnonzero(mirror != np.arange(R * R))
    assert len(covered) > 0.3 * R * R and (mirror[mirror[covered]] == covered).mean() > 0.8
    tones = [RegionMixAlbedo([plain]).sample(ict, np.random.default_rng(i)).texture[outside].mean() for i in range(12)]
    assert np.ptp(tones) > 0.1 and all(0.0 <= t <= 1.0 for t in tones)
    with pytest.raises(BadInputError, match="one \\(R, R, 3\\) shape"):
        RegionMixAlbedo([plain, np.zeros((32, 32, 3), np.float32)])
    with pytest.raises(BadInputError, match="colour ranges"):
        RegionMixAlbedo([plain], colour={"skin": (0.0, (1.0, 1.0), (1.0, 1.0))})


def test_mix2_albedo_source_renders(ict, monkeypatch):
    """``--albedo mix2``: smooth, albedo-space and region-mixed photo textures by
    :data:`MIX2_ALBEDO_WEIGHTS` (here two stand-in textures for the training photos); a face drawn
    from it renders with the region-mixed texture on the nose ridge."""
    from face3d.synth import calibrate
    from face3d.synth.shards import MIX2_ALBEDO_WEIGHTS, make_albedo
    from face3d.synth.sources import MixedAlbedo, RegionMixAlbedo

    blue = np.zeros((32, 32, 3), np.float32)
    blue[..., 2] = 0.9
    monkeypatch.setattr(calibrate, "training_textures", lambda limit=None: [blue, blue])
    mix = make_albedo("mix2", ict)
    assert isinstance(mix, MixedAlbedo) and isinstance(mix.sources[2], RegionMixAlbedo)
    w = np.array(MIX2_ALBEDO_WEIGHTS, float)
    if ict.albedo_mean is None:
        w[1] = 0.0
    np.testing.assert_allclose(mix.p, w / w.sum())
    cfg = SynthConfig(crop_size=96, occluder_prob=0.0, jpeg_prob=0.0, blur_prob=0.0, noise_std=(0.0, 0.0))
    synth = FaceSynthesizer(ict, cfg, albedo=mix.sources[2])
    s = synth.sample(sample_rng(2, 1), yaw_deg=(0, 0), pitch_deg=(0, 0), roll_deg=(0, 0))
    x, y = np.floor(s.landmarks68[29]).astype(int)  # nose ridge: skin base, blue whatever the colour change
    r, g, b = s.image[y, x].astype(int)
    assert b > r + 30 and b > g + 30


def test_regressor_benchmark_paired_difference():
    """benchmarks/regressor.py --against: B − A of the mean of yaw bins, with a paired bootstrap
    interval that holds the point and collapses where every face moves by the same amount."""
    from pathlib import Path

    from face3d.testing import load_script

    bench = load_script(Path(__file__).resolve().parents[1] / "benchmarks" / "regressor.py", "bench_regressor")
    yaw = np.array([10.0] * 6 + [45.0] * 4 + [75.0] * 2)
    a = [(y, 0.05, 0.0, 0.0) for y in yaw]
    b = [(y, 0.05 - (0.01 if y > 60 else 0.0), 0.0, 0.0) for y in yaw]  # only the profiles improve, by 1 point
    point, lo, hi = bench.paired_difference("test", a, b, draws=200)
    assert point == pytest.approx(-1.0 / 3) and lo == pytest.approx(-1.0 / 3) and hi == pytest.approx(-1.0 / 3)
    rng = np.random.default_rng(1)
    noisy = [(y, 0.05 + rng.normal(0, 0.01), 0.0, 0.0) for y in yaw]
    point, lo, hi = bench.paired_difference("test", a, noisy, draws=500)
    assert lo < point < hi and hi - lo > 0.2
    with pytest.raises(ValueError, match="same faces"):
        bench.paired_difference("test", a, b[:-1])
