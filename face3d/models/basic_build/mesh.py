"""Triangulate the implicit head: a radial (azimuth x elevation) grid projected onto the surface.

Each grid vertex is the outermost intersection of a ray from ``anatomy.RAY_ORIGIN`` with the
surface of :func:`shape.head_field`. Columns are symmetric about the midline (azimuth a and -a
both sampled), so the mirror map x -> -x is a vertex permutation; grid cells are split along mirrored
diagonals on the two sides, so the triangulation itself is mirror-symmetric. Rows and columns are denser
over the face. The lips are split along one grid row (the mouth line) and the slit is closed
behind by a mouth-interior pocket, so the mesh is watertight and ``jawOpen`` opens a mouth.

UVs: the head chart is the grid itself (u = column / Na, v = row), face in the middle of
[0,1]^2, OBJ convention (v up); the mouth pocket has its own small chart along the bottom.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from face3d.models.basic_build import anatomy as A
from face3d.models.basic_build.shape import head_field

N_AZIMUTH = 136
N_ELEVATION = 96
POCKET_STEPS = 9
HEAD_UV_V0 = 0.08  # head chart occupies v in [HEAD_UV_V0, 1]; the pocket chart lies below


@dataclass
class HeadMesh:
    """Mean head mesh and its parametrisation (all float64; metres)."""

    vertices: np.ndarray  # (V,3)
    faces: np.ndarray  # (F,3) int64
    uvs: np.ndarray  # (T,2)
    uv_faces: np.ndarray  # (F,3)
    azimuth: np.ndarray  # (Na,) column angles
    elevation: np.ndarray  # (Ne,) row angles
    grid_index: np.ndarray  # (Ne, Na) vertex ids of the grid
    mouth_row: int  # grid row of the lip line
    slit_cols: np.ndarray  # columns whose lip-line vertex is split
    lower_lip_ids: np.ndarray  # duplicated lip-line vertices used by the lower lip (len slit)
    pocket_ids: np.ndarray  # (len slit, POCKET_STEPS) interior vertex ids
    pocket_t: np.ndarray  # (V,) pocket parameter 0 (upper lip) .. 1 (lower lip), -1 elsewhere
    mirror: np.ndarray  # (V,) index of each vertex's mirror image


def _density_samples(n: int, lo: float, hi: float, density) -> np.ndarray:
    """n+1 samples of [lo, hi] spaced inversely to ``density`` (lo and hi included)."""
    t = np.linspace(lo, hi, 20001)
    d = density(t)
    cdf = np.concatenate([[0.0], np.cumsum(0.5 * (d[1:] + d[:-1]) * np.diff(t))])
    cdf /= cdf[-1]
    return np.interp(np.linspace(0.0, 1.0, n + 1), cdf, t)


def grid_angles() -> tuple[np.ndarray, np.ndarray, int]:
    """Column azimuths (Na,) symmetric about 0, row elevations (Ne,) and the mouth row index."""
    half = _density_samples(
        N_AZIMUTH // 2, 0.0, np.pi,
        lambda a: 1.0 + 2.6 * np.exp(-((a / 0.75) ** 2)) + 1.2 * np.exp(-(((a - np.pi / 2) / 0.22) ** 2)),
    )
    az = np.concatenate([-half[::-1][:-1], half[:-1]])  # -pi .. just below pi, 0 at Na/2
    rows = _density_samples(
        N_ELEVATION + 1, -np.pi / 2, np.pi / 2,
        lambda e: 1.0 + 2.8 * np.exp(-(((e + 0.2) / 0.55) ** 2)) + 2.2 * np.exp(-(((e - 0.36) / 0.13) ** 2)),
    )[1:-1]
    o = A.RAY_ORIGIN
    e_mouth = np.arctan2(A.STOMION[1] - o[1], A.STOMION[2] - o[2])
    m = int(np.argmin(np.abs(rows - e_mouth)))
    rows = rows.copy()
    rows[m] = e_mouth
    return az, rows, m


def directions(az: np.ndarray, el: np.ndarray) -> np.ndarray:
    """Unit ray directions (..., 3) for azimuth/elevation arrays (broadcast)."""
    ce = np.cos(el)
    return np.stack(np.broadcast_arrays(ce * np.sin(az), np.sin(el), ce * np.cos(az)), -1)


def project_rays(dirs: np.ndarray, step: float = 0.003, iters: int = 24) -> np.ndarray:
    """Distance (N,) from RAY_ORIGIN to the outermost surface point along unit rays (N,3).

    Marches inward from outside the head (0.22 m, 0.36 m for rays toward the neck) in
    ``step`` increments to the first inside sample, then bisects.
    """
    o = A.RAY_ORIGIN
    n = dirs.shape[0]
    r_start = np.where(dirs[:, 1] < -0.55, 0.36, 0.22)
    r_out = r_start.copy()
    r_in = np.zeros(n)
    active = np.ones(n, dtype=bool)
    k = 0
    while active.any():
        k += 1
        idx = np.nonzero(active)[0]
        r = r_start[idx] - k * step
        f = head_field(o + dirs[idx] * r[:, None])
        hit = (f < 0) | (r <= step)
        r_in[idx[hit]] = np.maximum(r[hit], 0.0)
        active[idx[hit]] = False
        r_out[idx[~hit]] = r[~hit]
    lo, hi = r_in, r_out
    for _ in range(iters):
        mid = 0.5 * (lo + hi)
        inside = head_field(o + dirs * mid[:, None]) < 0
        lo = np.where(inside, mid, lo)
        hi = np.where(inside, hi, mid)
    return 0.5 * (lo + hi)


def build_mesh() -> HeadMesh:
    """Triangulate the mean head (deterministic)."""
    az, el, m = grid_angles()
    na, ne = len(az), len(el)
    dirs = directions(az[None, :], el[:, None]).reshape(-1, 3)
    poles = np.array([[0.0, -1.0, 0.0], [0.0, 1.0, 0.0]])
    all_dirs = np.concatenate([dirs, poles])
    radii = project_rays(all_dirs)
    verts = [A.RAY_ORIGIN + all_dirs * radii[:, None]]
    grid = np.arange(na * ne).reshape(ne, na)
    bottom, top = na * ne, na * ne + 1
    nv = na * ne + 2

    # mouth slit: lip-line vertices strictly between the corners are duplicated
    o = A.RAY_ORIGIN
    a_corner = np.arctan2(A.CHEILION[0] - o[0], A.CHEILION[2] - o[2])
    slit = np.nonzero(np.abs(az) < a_corner)[0]
    lower = nv + np.arange(len(slit))
    verts.append(verts[0][grid[m, slit]])
    nv += len(slit)
    lower_of = {int(c): int(i) for c, i in zip(slit, lower)}

    faces = []
    uvf = []
    # head chart: UV index = grid index with an extra seam column (u = 1)
    uu = np.arange(na + 1) / na
    vv = HEAD_UV_V0 + (1 - HEAD_UV_V0) * (np.arange(ne) + 1) / (ne + 1)
    uv_grid = np.stack(np.meshgrid(uu, vv), -1).reshape(-1, 2)  # ((ne)*(na+1), 2)
    uv_id = np.arange(ne * (na + 1)).reshape(ne, na + 1)
    uv_bottom_start = len(uv_grid)
    uv_list = [uv_grid, np.stack([(np.arange(na) + 0.5) / na, np.full(na, HEAD_UV_V0)], -1),
               np.stack([(np.arange(na) + 0.5) / na, np.ones(na)], -1)]
    uv_top_start = uv_bottom_start + na
    for j in range(ne - 1):
        for c in range(na):
            c1 = (c + 1) % na
            p00, p01, p10, p11 = grid[j, c], grid[j, c1], grid[j + 1, c], grid[j + 1, c1]
            if j + 1 == m:  # quads below the lip line use the lower-lip copies
                p10 = lower_of.get(c, p10)
                p11 = lower_of.get(c1, p11)
            t00, t01, t10, t11 = uv_id[j, c], uv_id[j, c + 1], uv_id[j + 1, c], uv_id[j + 1, c + 1]
            if c >= na // 2:  # +X half: diagonal p00-p11; -X half: its mirror image p01-p10
                faces += [(p00, p01, p11), (p00, p11, p10)]
                uvf += [(t00, t01, t11), (t00, t11, t10)]
            else:
                faces += [(p00, p01, p10), (p01, p11, p10)]
                uvf += [(t00, t01, t10), (t01, t11, t10)]
    for c in range(na):
        c1 = (c + 1) % na
        faces.append((bottom, grid[0, c1], grid[0, c]))
        uvf.append((uv_bottom_start + c, uv_id[0, c + 1], uv_id[0, c]))
        faces.append((top, grid[ne - 1, c], grid[ne - 1, c1]))
        uvf.append((uv_top_start + c, uv_id[ne - 1, c], uv_id[ne - 1, c + 1]))

    # mouth pocket: per slit column a loop from the upper lip edge back and round to the lower
    V = verts[0]
    k = POCKET_STEPS
    t = np.arange(1, k + 1) / (k + 1)
    pocket_ids = nv + np.arange(len(slit) * k).reshape(len(slit), k)
    pocket_pts = []
    depth, height = 0.034, 0.011
    for col in slit:
        p0 = V[grid[m, col]]
        w = np.sin(np.pi * t)
        pts = np.stack([
            p0[0] * (1.0 + 0.35 * w),
            p0[1] + height * np.sin(2 * np.pi * t) * (1 - 0.3 * t),
            p0[2] - depth * w ** 0.8,
        ], -1)
        pocket_pts.append(pts)
    verts.append(np.concatenate(pocket_pts))
    nv += len(slit) * k
    uv_pocket_start = sum(len(u) for u in uv_list)
    pu = 0.3 + 0.4 * np.arange(len(slit)) / max(len(slit) - 1, 1)
    pv = 0.06 * np.concatenate([[0.0], t, [1.0]])
    uv_list.append(np.stack(np.meshgrid(pu, pv, indexing="ij"), -1).reshape(-1, 2))
    puv = uv_pocket_start + np.arange(len(slit) * (k + 2)).reshape(len(slit), k + 2)
    chains = [np.concatenate([[grid[m, c]], pocket_ids[s], [lower[s]]]) for s, c in enumerate(slit)]
    for s in range(len(slit) - 1):
        a, b = chains[s], chains[s + 1]
        for i in range(k + 1):
            faces += [(a[i], a[i + 1], b[i + 1]), (a[i], b[i + 1], b[i])]
            uvf += [(puv[s, i], puv[s, i + 1], puv[s + 1, i + 1]), (puv[s, i], puv[s + 1, i + 1], puv[s + 1, i])]
    corner_lo, corner_hi = grid[m, slit[0] - 1], grid[m, slit[-1] + 1]
    cuv_lo = len(np.concatenate(uv_list))
    uv_list.append(np.array([[0.28, 0.03], [0.72, 0.03]]))
    a, b = chains[0], chains[-1]
    for i in range(k + 1):
        faces.append((corner_lo, a[i + 1], a[i]))
        uvf.append((cuv_lo, puv[0, i + 1], puv[0, i]))
        faces.append((corner_hi, b[i], b[i + 1]))
        uvf.append((cuv_lo + 1, puv[-1, i], puv[-1, i + 1]))

    vertices = np.concatenate(verts)
    faces_a = np.asarray(faces, dtype=np.int64)  # all wound counter-clockwise seen from outside
    pocket_t = np.full(len(vertices), -1.0)
    pocket_t[grid[m, slit]] = 0.0
    pocket_t[lower] = 1.0
    pocket_t[pocket_ids] = t[None, :]

    mirror = np.empty(len(vertices), dtype=np.int64)
    mcol = (na - np.arange(na)) % na
    mirror[grid] = grid[:, mcol]
    mirror[[bottom, top]] = [bottom, top]
    col_to_slit = {int(c): s for s, c in enumerate(slit)}
    ms = np.array([col_to_slit[int(mcol[c])] for c in slit])
    mirror[lower] = lower[ms]
    mirror[pocket_ids] = pocket_ids[ms]
    return HeadMesh(vertices, faces_a, np.concatenate(uv_list), np.asarray(uvf, dtype=np.int64), az, el, grid,
                    m, slit, lower, pocket_ids, pocket_t, mirror)
