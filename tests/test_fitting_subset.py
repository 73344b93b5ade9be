"""The fit's cheaper paths give the values of the plain ones: blend shapes of a vertex subset
(cached sliced bases), the stages' vertex subsets and their landmarks, the foreach Adam, and the
crop's windowed box blur, the per-model texture face mask (issue 26)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from face3d.fitting.optim import Adam
from face3d.fitting.stages import (
    _crop_images,
    _Params,
    _subset,
    fitting_region,
    _texture_face_mask,
    set_landmarks,
    texture_face_mask,
)
from face3d.models.model import ModelArrays, MorphableModel, model_memo, sliced_bases


def _model(V: int = 60, seed: int = 0) -> MorphableModel:
    g = torch.Generator().manual_seed(seed)
    faces = torch.stack([torch.arange(V - 2), torch.arange(1, V - 1), torch.arange(2, V)], 1)
    return MorphableModel(ModelArrays(torch.randn(V, 3, generator=g), faces, id_basis=torch.randn(5, V, 3, generator=g),
                                      exp_basis=torch.randn(4, V, 3, generator=g),
                                      embeddings={"ibug68": (torch.tensor([0, 7, 30]), torch.tensor([[0.2, 0.3, 0.5]] * 3))}))


def test_blend_shapes_of_a_vertex_subset_are_those_of_the_full_mesh():
    m = _model()
    s, e = torch.randn(2, 5), torch.rand(2, 4)
    idx = torch.tensor([3, 4, 10, 41, 59])
    full = m.blend_shapes(s, e, 2)
    part = m.blend_shapes(s, e, 2, vertices=idx)
    assert part.shape == (2, 5, 3)
    torch.testing.assert_close(part, full[:, idx], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(m.blend_shapes(None, None, 1, vertices=idx)[0].numpy(), m.template[idx].numpy())


def test_sliced_bases_are_cached_and_follow_the_buffers():
    m = _model()
    idx = torch.tensor([1, 2, 8])
    a = sliced_bases(m, idx)
    assert sliced_bases(m, idx.clone()) is a  # the same id set: the cached slices
    assert a[1].shape == (5, 9) and a[1].is_contiguous()
    np.testing.assert_array_equal(a[1].numpy(), m.id_basis[:, idx].reshape(5, 9).numpy())
    with torch.no_grad():
        m.id_basis[0, 2] += 1.0  # edited in place: sliced again
    b = sliced_bases(m, idx)
    assert b is not a and float(b[1][0, 3] - a[1][0, 3]) == 1.0
    m.double()  # new buffers: sliced again, in their dtype
    c = sliced_bases(m, idx)
    assert c[0].dtype == torch.float64 and c is not b
    idx[0] = 5  # the same id tensor edited in place: its new ids
    np.testing.assert_array_equal(sliced_bases(m, idx)[0].numpy(), m.template[torch.tensor([5, 2, 8])].numpy())


def test_stage_subsets_give_the_full_models_landmarks_and_render_triangles():
    m = _model(V=80)
    faces = m.faces[20:40]
    sub = _subset(m, "ibug68", faces)
    assert torch.equal(sub.idx, torch.unique(torch.cat([m.faces[torch.tensor([0, 7, 30])].reshape(-1), faces.reshape(-1)])))
    assert torch.equal(sub.idx[sub.faces], faces)  # the rendered triangles, renumbered into idx
    p = _Params(m, 2, 1, torch.device("cpu"))
    p.shape_n.normal_()
    p.expression.uniform_()
    p.pose.copy_(torch.tensor([[0.2, -0.5, 0.1], [0.0, 0.3, 0.0]]))
    v = p.posed(sub)
    full = p.vertices()
    torch.testing.assert_close(v, full[:, sub.idx], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(sub.landmarks(v), set_landmarks(m, full, "ibug68"), rtol=1e-5, atol=1e-5)
    two = _subset(m, "ibug68+ibug68")
    assert two.lm_corners.shape == (6, 3) and two.idx.numel() == 9


def test_the_photometric_subset_of_a_real_model_covers_its_fitting_region():
    from face3d.models.basic import load_basic

    m = load_basic()
    region = fitting_region(m)
    fit_faces = m.faces[region[m.faces].min(1).values > 0.5]
    sub = _subset(m, "ibug68", fit_faces)
    used = torch.unique(fit_faces)
    assert torch.isin(used, sub.idx).all() and sub.idx.numel() < m.n_vertices
    assert torch.equal(sub.idx[sub.faces], fit_faces)


def _reference_adam_step(xs, ms, vs, lrs, t, b1=0.9, b2=0.999, eps=1e-8):
    c1, c2 = 1 - b1**t, 1 - b2**t
    for x, m, v, lr in zip(xs, ms, vs, lrs):
        g = x.grad
        m.mul_(b1).add_(g, alpha=1 - b1)
        v.mul_(b2).addcmul_(g, g, value=1 - b2)
        x.addcdiv_(m / c1, (v / c2).sqrt_().add_(eps), value=-lr)


def test_model_memo_follows_the_source_tensors():
    m, other = _model(), _model(seed=1)
    calls = []

    def total(model):
        calls.append(1)
        return float(model.template.sum())

    first = model_memo(m, "total", (m.template, None), lambda: total(m))
    assert first == float(m.template.sum()) and model_memo(m, "total", (m.template, None), lambda: total(m)) == first
    assert len(calls) == 1
    assert model_memo(other, "total", (other.template, None), lambda: total(other)) == float(other.template.sum())  # per model
    m.template[0, 0] += 1.0  # changed in place: recomputed
    moved = float(m.template.sum())
    assert moved != first and model_memo(m, "total", (m.template, None), lambda: total(m)) == moved
    m.register_buffer("template", m.template.clone())  # a new tensor: recomputed
    assert model_memo(m, "total", (m.template, None), lambda: total(m)) == moved
    assert model_memo(m, "total", (m.template, m.faces), lambda: total(m)) == moved  # other sources: recomputed
    assert len(calls) == 5


def test_texture_face_mask_is_kept_per_model_and_follows_its_tensors():
    m = _model()
    m.register_buffer("uvs", torch.rand(60, 2) * 0.9)
    m.register_buffer("uv_faces", m.faces.clone())
    m.uvs[0] = torch.tensor([1.5, 0.5])  # triangle 0 leaves the [0, 1] tile
    region = torch.ones(60, dtype=torch.bool)
    region[59] = False  # triangle 57 (57, 58, 59) lies outside the face region
    m.regions["face"] = region
    first = texture_face_mask(m)
    expected = np.ones(58, bool)
    expected[[0, 57]] = False
    np.testing.assert_array_equal(first, expected)
    first[:] = False  # callers get copies: the kept mask is not theirs to change
    np.testing.assert_array_equal(texture_face_mask(m), expected)
    m.uvs[0] = torch.tensor([0.5, 0.5])  # changed in place: recomputed
    expected[0] = True
    np.testing.assert_array_equal(texture_face_mask(m), expected)
    m.regions["face"] = torch.ones(60, dtype=torch.bool)  # a new tensor: recomputed
    np.testing.assert_array_equal(texture_face_mask(m), np.ones(58, bool))
    np.testing.assert_array_equal(texture_face_mask(m), _texture_face_mask(m))


def test_foreach_adam_takes_the_per_tensor_steps_bit_for_bit():
    torch.manual_seed(3)
    a, b = torch.randn(1, 50, requires_grad=True), torch.randn(2, 7, requires_grad=True)
    ra, rb = a.detach().clone().requires_grad_(True), b.detach().clone().requires_grad_(True)
    a0 = a.detach().clone()
    opt = Adam([([a], 0.1), ([b], 0.02)])
    ms, vs = [torch.zeros_like(ra), torch.zeros_like(rb)], [torch.zeros_like(ra), torch.zeros_like(rb)]
    for t in range(1, 40):
        opt.scale = 1.0 if t < 20 else 0.3
        opt.zero_grad()
        ((a.sin() ** 2).sum() + (b * b.cos()).sum()).backward()
        opt.step()
        ra.grad = rb.grad = None
        ((ra.sin() ** 2).sum() + (rb * rb.cos()).sum()).backward()
        with torch.no_grad():
            _reference_adam_step([ra, rb], ms, vs, [0.1 * opt.scale, 0.02 * opt.scale], t)
    assert torch.equal(a, ra) and torch.equal(b, rb)
    assert float((a.detach() - a0).abs().max()) > 0.1  # the parameters moved


def test_windowed_crop_blur_equals_blurring_the_whole_photo():
    rng = np.random.default_rng(1)
    img = rng.random((230, 310, 3), dtype=np.float32)
    for box, size in (([40.0, 17.5, 180.0], 40), ([0.0, 0.0, 230.0], 32), ([129.3, 49.9, 180.1], 50)):
        boxes = np.array([box], np.float32)
        got = _crop_images([img], boxes, size)
        x0, y0, side = boxes[0]
        k = round(float(side) / size)
        t = torch.as_tensor(img).permute(2, 0, 1).unsqueeze(0)
        blurred = F.avg_pool2d(t, k, stride=1, padding=k // 2, count_include_pad=False)[..., :230, :310]
        g = (torch.arange(size, dtype=torch.float32) + 0.5) * (float(side) / size)
        grid = torch.stack(torch.meshgrid((float(x0) + g) / 310 * 2 - 1, (float(y0) + g) / 230 * 2 - 1, indexing="xy"), -1)[None]
        want = F.grid_sample(blurred, grid, mode="bilinear", padding_mode="zeros", align_corners=False)[0].permute(1, 2, 0)
        assert k >= 2 and torch.equal(got[0], want), box


def test_pnp_jacobian_is_scipys_two_point_jacobian_and_rows_project_as_single_calls():
    from scipy.optimize._numdiff import approx_derivative

    from face3d.fitting.init import _forward_difference, _project

    rng = np.random.default_rng(5)
    X = rng.normal(0, 0.05, (30, 3))
    P = np.concatenate([rng.normal(0, 0.3, (4, 3)), rng.normal(0, 0.02, (4, 2)), -rng.uniform(0.4, 1.0, (4, 1)),
                        np.log(rng.uniform(400, 900, (4, 1)))], 1)
    rows = _project(P, X, 320.0, 240.0)
    for k in range(4):
        assert np.array_equal(rows[k], _project(P[k], X, 320.0, 240.0))
    target = _project(P[0], X, 320.0, 240.0) + rng.normal(0, 1.0, (30, 2))

    def resid(p):
        r = (_project(np.atleast_2d(p), X, 320.0, 240.0) - target).reshape(len(np.atleast_2d(p)), -1)
        return r[0] if p.ndim == 1 else r

    for k in range(4):
        J = _forward_difference(resid, P[k])
        assert J.shape == (60, 7) and np.abs(J).max() > 1.0
        assert np.array_equal(J, approx_derivative(resid, P[k], method="2-point", f0=resid(P[k])))


def _landmark_case(bounded: bool, B: int, lm_set: str, S: int = 1):
    from face3d.fitting.stages import _Landmarks, face_scale

    m = _model(V=80).double()
    m.set_embedding("mediapipe478", torch.tensor([3, 10, 20, 33, 50, 61]), torch.tensor([[0.6, 0.3, 0.1]] * 6))
    sub = _subset(m, lm_set)
    L = sub.lm_corners.shape[0]
    p = _Params(m, B, S, torch.device("cpu"))
    for name in ("shape_n", "expression", "pose", "translation", "log_focal", "id_std"):
        setattr(p, name, getattr(p, name).double())
    p.bounded = bounded
    g = torch.Generator().manual_seed(B)
    p.shape_n.normal_(generator=g)
    p.expression.uniform_(-0.3, 1.3, generator=g)  # outside [0, 1] too: the barrier
    p.pose.copy_(torch.tensor([[0.2, -0.5, 0.1], [0.0, 0.3, -0.2]])[:B])
    p.translation.copy_(torch.tensor([[0.1, 0.0, -8.0], [0.0, -0.2, -6.0]])[:B])
    p.log_focal.fill_(6.0)
    W, H = torch.tensor([640.0, 500.0], dtype=torch.float64)[:B], torch.tensor([480.0, 500.0], dtype=torch.float64)[:B]
    tgt = torch.rand(B, L, 2, generator=g, dtype=torch.float64) * 300
    weights = torch.rand(B, L, generator=g, dtype=torch.float64) + 0.2 if "+" in lm_set else torch.rand(L, generator=g, dtype=torch.float64) + 0.2
    lms = _Landmarks(lm_set, tgt, tgt.numpy(), weights, ([0], [2]), [(640, 480), (500, 500)][:B], W, H, face_scale(tgt))
    return p, sub, lms


def test_numpy_landmark_step_has_the_autograd_energy_and_gradients():
    from face3d.fitting.camera import intrinsics
    from face3d.fitting.stages import FitConfig, _landmark_energy, _landmark_step
    from face3d.models.model import axis_angle_to_matrix

    cases = ((False, 1, "ibug68", 0.0, None, 1), (True, 2, "ibug68+mediapipe478", 0.5, None, 1), (True, 2, "ibug68", 0.0, None, 2),
             (False, 1, "mediapipe478", 0.0, [[1e-5, -2e-5, 0.0]], 1), (True, 1, "ibug68", 0.0, [[0.0, 0.0, 0.0]], 1))  # θ² < 1e-8: the series
    for bounded, B, lm_set, w_temporal, pose, S in cases:
        cfg = FitConfig(w_temporal=w_temporal, w_identity=0.3, w_expression=0.2)
        p, sub, lms = _landmark_case(bounded, B, lm_set, S)
        if pose is not None:
            p.pose.copy_(torch.tensor(pose))
        params = [p.shape_n, p.expression, p.pose, p.translation, p.log_focal]
        got = []
        for fast in (True, False):
            for t in params:
                t.grad = None
                t.requires_grad_(True)
            if fast:
                loss = _landmark_step(p, cfg, lms, sub)
            else:
                R = axis_angle_to_matrix(p.pose)
                energy = _landmark_energy(p, cfg, lms, sub.landmarks(p.posed(sub, R)), R, intrinsics(p.log_focal.exp(), lms.W, lms.H))
                energy.backward()
                loss = float(energy.detach())
            got.append((loss, [t.grad.clone() for t in params]))
        assert got[1][0] > 0 and abs(got[0][0] - got[1][0]) <= 1e-12 * got[1][0]  # the same energy
        for a, b in zip(got[0][1], got[1][1]):
            assert float(b.abs().max()) > 0 and a.dtype == b.dtype
            torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-11)


def test_contour_sides_mark_the_left_and_right_contours():
    from face3d.fitting.losses import contour_sides, contour_weights

    side = contour_sides(6, ([0, 1], [4, 1]))
    assert side.tolist() == [1.0, -1.0, 0.0, 0.0, -1.0, 0.0]  # the right list wins a shared point
    from face3d.models.model import axis_angle_to_matrix

    w = contour_weights(axis_angle_to_matrix(torch.tensor([[0.0, 0.4, 0.0]])), 6, [0, 1], [4, 1])
    torch.testing.assert_close(w[0, 0], torch.exp(-8 * torch.sin(torch.tensor(0.4))))  # the face turned right: the left cheek fades
    assert w[0, 1] == 1 and w[0, 4] == 1 and w[0, 2] == 1


class _Jointed(MorphableModel):
    """The same linear model seen as articulated (a ``forward`` override): the fit takes its autograd path."""

    def forward(self, shape=None, expression=None, pose=None, jaw=None, **kwargs):
        return super().forward(shape, expression, pose)


def test_numpy_and_autograd_landmark_stages_fit_the_same_face():
    from face3d.fitting.stages import FitConfig, FitTarget, fit
    from face3d.fitting.synthetic import random_face
    from face3d.models.basic import load_basic

    m = load_basic()
    a = ModelArrays(m.template, m.faces, id_basis=m.id_basis, id_std=m.id_std, exp_basis=m.exp_basis, exp_names=m.exp_names,
                    regions=dict(m.regions), embeddings={k: m.embeddings[k] for k in m.embeddings})
    linear, jointed = MorphableModel(a), _Jointed(a)
    face = random_face(m, np.random.default_rng(4), size=256, yaw_deg=25.0)
    target = [FitTarget(face.landmarks68, "ibug68", 256, 256)]
    cfg = FitConfig(photometric=False, landmark_steps=40)
    fast, plain = fit(linear, target, cfg), fit(jointed, target, cfg)
    assert float(plain.pose.norm()) > 0.3 and float(plain.shape.abs().max()) > 0  # a real fit (the face is turned 25°)
    for k in ("shape", "expression", "pose", "translation", "focal"):
        a_, b_ = getattr(fast, k), getattr(plain, k)
        assert float((a_ - b_).abs().max()) <= 1e-4 * max(float(b_.abs().max()), 1e-3), k
    assert abs(fast.losses["landmarks"] - plain.losses["landmarks"]) <= 1e-5 * plain.losses["landmarks"]
