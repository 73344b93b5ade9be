"""Compiled (numba) visibility kernels of the built-in backend.

Nothing here is differentiable: the kernels return integer maps (triangle ids, pixel pairs)
from which :mod:`face3d.renderers.backends.torch_cpu` recomputes every value differentiably in torch.

The kernels are deliberately serial (no ``parallel=True``): a numba OpenMP pool's idle workers
busy-wait and, on a 2-core machine, starve torch's thread — measured on the 52k-triangle face
at 256², forward+backward went from ~0.1 s to ~2.4 s of CPU time with a parallel pool present.
The whole visibility pass is a few milliseconds serially (one pass over the triangles, no per-pixel Python).

Screen convention (nvdiffrast / docs/conventions.md): clip x = -1 is the left edge of column 0,
clip y = -1 the top edge of row 0; pixel (i, j) has its centre at screen (i + 0.5, j + 0.5).
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True)
def _screen(pos, H, W):
    """(B,V,4) clip → (B,V,4): screen x, screen y (pixels), z/w, 1 if w > 0 else 0."""
    B, V = pos.shape[0], pos.shape[1]
    out = np.zeros((B, V, 4), dtype=np.float64)
    for k in range(B * V):
        b = k // V
        v = k - b * V
        w = np.float64(pos[b, v, 3])
        if w > 0.0:
            out[b, v, 0] = (pos[b, v, 0] / w * 0.5 + 0.5) * W
            out[b, v, 1] = (pos[b, v, 1] / w * 0.5 + 0.5) * H
            out[b, v, 2] = pos[b, v, 2] / w
            out[b, v, 3] = 1.0
    return out


@njit(cache=True)
def _tri_bbox(scr, tri, H, W):
    """Per (b, f): inclusive pixel bbox (x0, x1, y0, y1) of pixel centres it may cover (x0 = -1 if
    culled), and the (B,F) int8 orientation signs of :func:`tri_facing`."""
    B = scr.shape[0]
    F = tri.shape[0]
    bb = np.empty((B, F, 4), dtype=np.int32)
    facing = np.zeros((B, F), dtype=np.int8)
    for k in range(B * F):
        b = k // F
        f = k - b * F
        i0, i1, i2 = tri[f, 0], tri[f, 1], tri[f, 2]
        bb[b, f, 0] = -1
        if scr[b, i0, 3] == 0.0 or scr[b, i1, 3] == 0.0 or scr[b, i2, 3] == 0.0:
            continue
        x0, y0 = scr[b, i0, 0], scr[b, i0, 1]
        x1, y1 = scr[b, i1, 0], scr[b, i1, 1]
        x2, y2 = scr[b, i2, 0], scr[b, i2, 1]
        area = (x1 - x0) * (y2 - y0) - (x2 - x0) * (y1 - y0)
        if area > 0.0:
            facing[b, f] = 1
        elif area < 0.0:
            facing[b, f] = -1
        if not (area != 0.0) or not np.isfinite(area):
            continue
        z0, z1, z2 = scr[b, i0, 2], scr[b, i1, 2], scr[b, i2, 2]
        if (z0 > 1.0 and z1 > 1.0 and z2 > 1.0) or (z0 < -1.0 and z1 < -1.0 and z2 < -1.0):
            continue
        xmin = min(x0, min(x1, x2))
        xmax = max(x0, max(x1, x2))
        ymin = min(y0, min(y1, y2))
        ymax = max(y0, max(y1, y2))
        if xmax < 0.0 or ymax < 0.0 or xmin > W or ymin > H:
            continue
        px0 = max(int(np.ceil(xmin - 0.5)), 0)
        px1 = min(int(np.floor(xmax - 0.5)), W - 1)
        py0 = max(int(np.ceil(ymin - 0.5)), 0)
        py1 = min(int(np.floor(ymax - 0.5)), H - 1)
        if px0 > px1 or py0 > py1:
            continue
        bb[b, f, 0] = px0
        bb[b, f, 1] = px1
        bb[b, f, 2] = py0
        bb[b, f, 3] = py1
    return bb, facing


@njit(cache=True)
def _raster_into(scr, tri, bb, ids, zbuf):
    """Z-buffer every triangle of ``bb`` (from ``_tri_bbox``) into ids (B,H,W) / zbuf (B,H,W), in
    ascending triangle order so that, with the strict ``<``, ties keep the lower id."""
    B = scr.shape[0]
    F = tri.shape[0]
    for b in range(B):
        for f in range(F):
            px0 = bb[b, f, 0]
            if px0 < 0:
                continue
            px1, py0, py1 = bb[b, f, 1], bb[b, f, 2], bb[b, f, 3]
            i0, i1, i2 = tri[f, 0], tri[f, 1], tri[f, 2]
            x0, y0, z0 = scr[b, i0, 0], scr[b, i0, 1], scr[b, i0, 2]
            x1, y1, z1 = scr[b, i1, 0], scr[b, i1, 1], scr[b, i1, 2]
            x2, y2, z2 = scr[b, i2, 0], scr[b, i2, 1], scr[b, i2, 2]
            area = (x1 - x0) * (y2 - y0) - (x2 - x0) * (y1 - y0)
            inv = 1.0 / area
            fid = np.int32(f + 1)
            for py in range(py0, py1 + 1):
                cy = py + 0.5
                dy0, dy1, dy2 = y0 - cy, y1 - cy, y2 - cy
                zrow, irow = zbuf[b, py], ids[b, py]
                for px in range(px0, px1 + 1):
                    # every test evaluated and one select (no early exits): ~15 % faster on small
                    # triangles, where the inside/outside branches are unpredictable
                    cx = px + 0.5
                    b0 = ((x1 - cx) * dy2 - (x2 - cx) * dy1) * inv
                    b1 = ((x2 - cx) * dy0 - (x0 - cx) * dy2) * inv
                    b2 = 1.0 - b0 - b1
                    z = b0 * z0 + b1 * z1 + b2 * z2
                    zo = zrow[px]
                    win = (b0 >= 0.0) & (b1 >= 0.0) & (b2 >= 0.0) & (z >= -1.0) & (z <= 1.0) & (z < zo)
                    zrow[px] = z if win else zo
                    irow[px] = fid if win else irow[px]


@njit(cache=True)
def rasterize_ids(pos, tri, H, W):
    """Visibility pass: (B,V,4) clip positions, (F,3) int64 → (B,H,W) int32 triangle id + 1 (0 = empty).

    Triangles with any w <= 0 are culled; per pixel, z/w outside [-1, 1] is clipped. A pixel is
    covered when its centre lies inside or on the triangle's boundary; the nearest z/w wins, ties
    go to the lower triangle id. One pass over the triangles into a whole-image z-buffer (at 256²
    it is 0.5 MB and stays in cache, so binning triangles to tiles first only cost time).
    """
    ids, _, _ = visibility(pos, tri, H, W)
    return ids


@njit(cache=True)
def visibility(pos, tri, H, W):
    """:func:`rasterize_ids`, with the screen positions (B,V,4) from ``_screen`` it used and the
    triangles' orientation signs (B,F) of :func:`tri_facing` (what antialiasing needs again)."""
    B = pos.shape[0]
    F = tri.shape[0]
    ids = np.zeros((B, H, W), dtype=np.int32)
    scr = _screen(pos, H, W)
    bb, facing = _tri_bbox(scr, tri, H, W)
    if F == 0 or B == 0:
        return ids, scr, facing
    zbuf = np.full((B, H, W), np.inf)
    _raster_into(scr, tri, bb, ids, zbuf)
    return ids, scr, facing


@njit(cache=True)
def _crossing_edge(scr, tri, nbr, facing, pair):
    """The edge (p, q) of triangle f through which the segment from pixel A's centre to pixel B's
    leaves it, if that is a silhouette edge (boundary, or its neighbour faces the other way), else
    (-1, -1). pair = (b, f, ax, ay, bx, by, axis 0 = horizontal | 1 = vertical). As in nvdiffrast,
    horizontal pairs only consider edges at least as vertical as horizontal and vertical pairs the
    others, so each edge is blended once and t never depends on a near-parallel crossing."""
    b, f, ax, ay, bx, by, axis = pair
    ca_x, ca_y = ax + 0.5, ay + 0.5
    for e in range(3):
        ip = tri[f, e]
        iq = tri[f, (e + 1) % 3]
        px, py = scr[b, ip, 0], scr[b, ip, 1]
        qx, qy = scr[b, iq, 0], scr[b, iq, 1]
        if axis == 0:
            if abs(qy - py) < abs(qx - px) or (py - ca_y) * (qy - ca_y) > 0.0:
                continue
            cross = px + (ca_y - py) * (qx - px) / (qy - py)
            t = (cross - ca_x) * (bx - ax)
        else:
            if abs(qx - px) <= abs(qy - py) or (px - ca_x) * (qx - ca_x) > 0.0:
                continue
            cross = py + (ca_x - px) * (qy - py) / (qx - px)
            t = (cross - ca_y) * (by - ay)
        if t < 0.0 or t > 1.0:
            continue
        g = nbr[f, e]
        if g >= 0 and facing[b, g] == facing[b, f]:
            return -1, -1
        return ip, iq
    return -1, -1


@njit(cache=True, inline="always")
def _put_pair(out, n, row):
    """Write row n of the (m,6) pair table: (batch, flat pixel A, flat pixel B, edge p, edge q, axis)."""
    for c in range(6):
        out[n, c] = row[c]


@njit(cache=True)
def silhouette_pairs(ids, zw, scr, tri, nbr, facing):
    """Pixel pairs straddling a visible silhouette edge (nvdiffrast-style antialiasing analysis).

    ids (B,H,W) int32 triangle id + 1; zw (B,H,W) z/w; scr (B,V,4) from ``_screen``; nbr (F,3)
    neighbour triangle across edge (k, k+1 mod 3), -1 on boundary/non-manifold edges; facing (B,F)
    sign of the triangle's clip-space orientation (0 if culled). For each horizontally or vertically
    adjacent pixel pair with different ids, the pixel whose triangle is nearer (or the only covered
    one) is A; if the edge of A's triangle that crosses the segment between the two centres is a
    silhouette edge, the pair is reported. As in nvdiffrast, horizontal pairs only consider edges
    that are at least as vertical as horizontal (|dy| >= |dx|) and vertical pairs the others, so
    each edge is blended once and t never depends on a near-parallel crossing. Returns (n, 6) int64 rows:
    (batch, flat pixel A, flat pixel B, edge vertex p, edge vertex q, axis 0=horizontal/1=vertical).
    """
    B, H, W = ids.shape
    F = tri.shape[0]
    out = np.empty((max(B * H * W * 2, 1), 6), dtype=np.int64)  # at most one row per (first pixel, axis)
    keys = np.empty(out.shape[0], dtype=np.int64)
    n = 0
    # only visible triangles with a silhouette edge can be pixel A of a pair: mark the visible ones,
    # then look at the pixels of those few (a scan of every pixel pair costs ~5x more)
    seen = np.zeros(F + 1, dtype=np.bool_)
    for b in range(B):
        for f in range(F + 1):
            seen[f] = False
        for y in range(H):
            for x in range(W):
                seen[ids[b, y, x]] = True
        for f in range(F):
            if not seen[f + 1]:
                continue
            sil = False
            for e in range(3):
                g = nbr[f, e]
                if g < 0 or facing[b, g] != facing[b, f]:
                    sil = True
                    break
            if not sil:
                continue
            xa, xb, xc = scr[b, tri[f, 0], 0], scr[b, tri[f, 1], 0], scr[b, tri[f, 2], 0]
            ya, yb, yc = scr[b, tri[f, 0], 1], scr[b, tri[f, 1], 1], scr[b, tri[f, 2], 1]
            # a superset of the pixel centres it covers (the visibility pass's box, one pixel wider)
            x0 = max(int(np.floor(min(xa, min(xb, xc)) - 0.5)), 0)
            x1 = min(int(np.ceil(max(xa, max(xb, xc)) - 0.5)), W - 1)
            y0 = max(int(np.floor(min(ya, min(yb, yc)) - 0.5)), 0)
            y1 = min(int(np.ceil(max(ya, max(yb, yc)) - 0.5)), H - 1)
            for y in range(y0, y1 + 1):
                for x in range(x0, x1 + 1):
                    if ids[b, y, x] != f + 1:
                        continue
                    # P = (x, y) with its right and lower neighbours (P first in scan order) and its
                    # left and upper ones (P second); P is pixel A when its triangle is the nearer one
                    # (ties: the first pixel), or the neighbour is empty
                    for k in range(4):
                        qx = x + (1 if k == 0 else (-1 if k == 2 else 0))
                        qy = y + (1 if k == 1 else (-1 if k == 3 else 0))
                        if qx < 0 or qy < 0 or qx >= W or qy >= H:
                            continue
                        tq = ids[b, qy, qx]
                        if tq == f + 1:
                            continue
                        if k < 2:
                            if tq != 0 and zw[b, qy, qx] < zw[b, y, x]:
                                continue
                        elif tq != 0 and not zw[b, y, x] < zw[b, qy, qx]:
                            continue
                        axis = k % 2
                        ip, iq = _crossing_edge(scr, tri, nbr, facing, (b, f, x, y, qx, qy, axis))
                        if ip < 0:
                            continue
                        _put_pair(out, n, (b, (y * W + x) + b * H * W, (qy * W + qx) + b * H * W, ip, iq, axis))
                        first = min(out[n, 1], out[n, 2])  # rows in the order of a scan over first pixels, then axis
                        keys[n] = first * 2 + axis
                        n += 1
    order = _argsort_unique(keys[:n])
    rows = np.empty((n, 6), dtype=np.int64)
    for i in range(n):
        for c in range(6):
            rows[i, c] = out[order[i], c]
    return rows


@njit(cache=True)
def _argsort_unique(keys):
    """Order (n,) int64 of distinct int64 keys: a bottom-up merge sort in plain loops (numba's
    np.argsort costs ~2 s more to compile on a first run than this whole module's kernels)."""
    n = keys.shape[0]
    order = np.empty(n, dtype=np.int64)
    for i in range(n):
        order[i] = i
    tmp = np.empty(n, dtype=np.int64)
    width = 1
    while width < n:
        for lo in range(0, n, 2 * width):
            mid = min(lo + width, n)
            hi = min(lo + 2 * width, n)
            i, j = lo, mid
            for k in range(lo, hi):
                if i < mid and (j >= hi or keys[order[i]] < keys[order[j]]):
                    tmp[k] = order[i]
                    i += 1
                else:
                    tmp[k] = order[j]
                    j += 1
        order, tmp = tmp, order
        width *= 2
    return order


@njit(cache=True)
def silhouette_pairs_scan(ids, zw, scr, tri, nbr, facing):
    """:func:`silhouette_pairs` by a scan over every horizontally and vertically adjacent pixel
    pair (the reference the faster search over visible silhouette triangles must equal)."""
    B, H, W = ids.shape
    out = np.empty((max(B * H * W * 2, 1), 6), dtype=np.int64)
    n = 0
    for b in range(B):
        for y in range(H):
            for x in range(W):
                for axis in range(2):
                    if axis == 0:
                        if x + 1 >= W:
                            continue
                        xb, yb = x + 1, y
                    else:
                        if y + 1 >= H:
                            continue
                        xb, yb = x, y + 1
                    ta = ids[b, y, x]
                    tb = ids[b, yb, xb]
                    if ta == tb:
                        continue
                    ax, ay, bx, by = x, y, xb, yb
                    if ta == 0 or (tb != 0 and zw[b, yb, xb] < zw[b, y, x]):
                        ax, ay, bx, by = xb, yb, x, y
                        ta, tb = tb, ta
                    ip, iq = _crossing_edge(scr, tri, nbr, facing, (b, ta - 1, ax, ay, bx, by, axis))
                    if ip < 0:
                        continue
                    _put_pair(out, n, (b, (ay * W + ax) + b * H * W, (by * W + bx) + b * H * W, ip, iq, axis))
                    n += 1
    return out[:n]


@njit(cache=True)
def tri_facing(scr, pos, tri):
    """(B,F) int8: sign of the 2D homogeneous determinant of each triangle, 0 if culled (w <= 0)."""
    B = pos.shape[0]
    F = tri.shape[0]
    out = np.zeros((B, F), dtype=np.int8)
    for k in range(B * F):
        b = k // F
        f = k - b * F
        i0, i1, i2 = tri[f, 0], tri[f, 1], tri[f, 2]
        if scr[b, i0, 3] == 0.0 or scr[b, i1, 3] == 0.0 or scr[b, i2, 3] == 0.0:
            continue
        x0, y0 = scr[b, i0, 0], scr[b, i0, 1]
        x1, y1 = scr[b, i1, 0], scr[b, i1, 1]
        x2, y2 = scr[b, i2, 0], scr[b, i2, 1]
        area = (x1 - x0) * (y2 - y0) - (x2 - x0) * (y1 - y0)
        if area > 0.0:
            out[b, f] = 1
        elif area < 0.0:
            out[b, f] = -1
    return out


def screen_positions(pos: np.ndarray, H: int, W: int) -> np.ndarray:
    """(B,V,4) clip → (B,V,4) float64 (screen x, screen y, z/w, valid)."""
    return _screen(pos, H, W)
