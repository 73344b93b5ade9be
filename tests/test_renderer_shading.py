"""Vertex normals and SH lighting against closed forms and numerical sphere integrals."""

from __future__ import annotations

import math

import pytest
import torch

from face3d import renderers as R
from face3d.errors import ShapeError

D = torch.float64


def icosphere(subdiv=2, dtype=D):
    t = (1 + 5**0.5) / 2
    v = torch.tensor(
        [[-1, t, 0], [1, t, 0], [-1, -t, 0], [1, -t, 0], [0, -1, t], [0, 1, t], [0, -1, -t], [0, 1, -t], [t, 0, -1], [t, 0, 1], [-t, 0, -1], [-t, 0, 1]],
        dtype=dtype,
    )
    f = [[0, 11, 5], [0, 5, 1], [0, 1, 7], [0, 7, 10], [0, 10, 11], [1, 5, 9], [5, 11, 4], [11, 10, 2], [10, 7, 6], [7, 1, 8],
         [3, 9, 4], [3, 4, 2], [3, 2, 6], [3, 6, 8], [3, 8, 9], [4, 9, 5], [2, 4, 11], [6, 2, 10], [8, 6, 7], [9, 8, 1]]  # fmt: skip
    verts = [tuple(x) for x in (v / v.norm(dim=1, keepdim=True)).tolist()]
    for _ in range(subdiv):
        cache: dict[tuple[int, int], int] = {}
        nf = []
        for a, b, c in f:
            m = []
            for i, j in ((a, b), (b, c), (c, a)):
                key = (min(i, j), max(i, j))
                if key not in cache:
                    p = torch.tensor(verts[i]) + torch.tensor(verts[j])
                    verts.append(tuple((p / p.norm()).tolist()))
                    cache[key] = len(verts) - 1
                m.append(cache[key])
            nf += [[a, m[0], m[2]], [b, m[1], m[0]], [c, m[2], m[1]], m]
        f = nf
    return torch.tensor(verts, dtype=dtype), torch.tensor(f)


def test_vertex_normals_of_sphere_are_radial_and_unit():
    v, f = icosphere(2)
    n = R.vertex_normals(v[None], f)[0]
    assert torch.allclose(n.norm(dim=-1), torch.ones(len(v), dtype=D))
    assert (n * v).sum(-1).min() > 0.995
    flipped = R.vertex_normals(v[None], f[:, [0, 2, 1]])[0]
    assert torch.allclose(flipped, -n)


def test_vertex_normals_are_area_weighted():
    v = torch.tensor([[[0.0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]]], dtype=D)
    # big triangle in the xy plane (normal +z), small one in the xz plane (normal +y), sharing vertex 0
    v[0, 3] *= 0.1
    f = torch.tensor([[0, 1, 2], [0, 3, 1]])
    n = R.vertex_normals(v, f)[0, 0]
    expected = torch.nn.functional.normalize(torch.tensor([0.0, 0.1, 1.0], dtype=D), dim=0)
    assert torch.allclose(n, expected)


def _fib_sphere(n=40000):
    i = torch.arange(n, dtype=D) + 0.5
    z = 1 - 2 * i / n
    phi = math.pi * (1 + 5**0.5) * i
    r = (1 - z * z).sqrt()
    return torch.stack((r * torch.cos(phi), r * torch.sin(phi), z), -1)


def _real_sh(d):
    x, y, z = d.unbind(-1)
    c0 = 0.5 * math.sqrt(1 / math.pi)
    c1 = math.sqrt(3 / (4 * math.pi))
    c2 = 0.5 * math.sqrt(15 / math.pi)
    c20 = 0.25 * math.sqrt(5 / math.pi)
    c22 = 0.25 * math.sqrt(15 / math.pi)
    return torch.stack(
        (torch.full_like(x, c0), c1 * y, c1 * z, c1 * x, c2 * x * y, c2 * y * z, c20 * (3 * z * z - 1), c2 * x * z, c22 * (x * x - y * y)),
        -1,
    )


def test_sh_shading_equals_numerical_lambertian_integral():
    """sh_basis(n) @ L must equal (1/π)∫ L(ω) max(0, n·ω) dω for radiance L = Σ L_lm Y_lm."""
    g = torch.Generator().manual_seed(0)
    L = torch.randn(9, 3, dtype=D, generator=g)
    dirs = _fib_sphere()
    radiance = _real_sh(dirs) @ L
    normals = torch.nn.functional.normalize(torch.randn(6, 3, dtype=D, generator=g), dim=-1)
    cos = (normals @ dirs.T).clamp(min=0)
    numeric = cos @ radiance * (4 * math.pi / len(dirs)) / math.pi
    analytic = R.sh_shade(normals[None], L[None])[0]
    assert torch.allclose(analytic, numeric, atol=2e-3)


def test_ambient_sh_shades_every_normal_uniformly():
    n = torch.nn.functional.normalize(torch.randn(1, 50, 3, dtype=D), dim=-1)
    sh = R.ambient_sh(torch.tensor([0.2, 0.5, 0.9]), dtype=D)
    out = R.sh_shade(n, sh)
    assert torch.allclose(out, torch.tensor([0.2, 0.5, 0.9], dtype=D).expand_as(out))
    sh0 = torch.zeros(1, 9, 3, dtype=D)
    sh0[:, 0] = 2.0
    assert torch.allclose(R.sh_shade(n, sh0), torch.full_like(out, 2.0 * R.SH_C0))
    assert R.sh_basis(n).shape == (1, 50, 9)


def test_sh_rejects_bad_shapes():
    with pytest.raises(ShapeError) as e:
        R.sh_shade(torch.zeros(1, 4, 3), torch.zeros(1, 4, 3))
    assert e.value.name == "sh"
    with pytest.raises(ShapeError) as e:
        R.sh_basis(torch.zeros(4, 2))
    assert e.value.name == "normals"
    with pytest.raises(ShapeError) as e:
        R.vertex_normals(torch.zeros(1, 3, 3), torch.tensor([[0, 1, 5]]))
    assert e.value.name == "faces"
