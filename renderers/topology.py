"""Triangle adjacency used by antialiasing to find silhouette edges."""

from __future__ import annotations

import hashlib
from collections import OrderedDict

import numpy as np
import torch

from ._checks import PerTensor

_CACHE: OrderedDict[bytes, np.ndarray] = OrderedDict()
_CACHE_SIZE = 16
# Fast path: the same index tensor object, unmodified since (its in-place version counter), maps
# straight to its adjacency without re-hashing its content (~2 ms for the 52k-triangle face).
_BY_OBJECT = PerTensor(_CACHE_SIZE)


def edge_neighbours(tri: np.ndarray) -> np.ndarray:
    """(F,3) int → (F,3) int64: the triangle across edge (k, k+1 mod 3), or -1.

    -1 marks boundary edges and non-manifold edges (shared by more than two triangles); both
    count as silhouette edges for antialiasing.
    """
    tri = np.asarray(tri, dtype=np.int64)
    F = tri.shape[0]
    nbr = np.full((F, 3), -1, dtype=np.int64)
    if F == 0:
        return nbr
    a = tri
    b = np.roll(tri, -1, axis=1)
    lo = np.minimum(a, b).reshape(-1)
    hi = np.maximum(a, b).reshape(-1)
    key = lo * (int(tri.max()) + 1) + hi
    order = np.argsort(key, kind="stable")
    ks = key[order]
    starts = np.flatnonzero(np.r_[True, ks[1:] != ks[:-1]])
    counts = np.diff(np.r_[starts, ks.size])
    two = starts[counts == 2]
    e0, e1 = order[two], order[two + 1]
    flat = nbr.reshape(-1)
    flat[e0] = e1 // 3
    flat[e1] = e0 // 3
    return nbr


def cached_neighbours(tri: torch.Tensor, topology_hash: object = None) -> np.ndarray:
    """`edge_neighbours` memoised on the index buffer's content (or on ``topology_hash`` if given)."""
    if topology_hash is None:
        return _BY_OBJECT.get(tri, lambda: _by_key(tri, None))
    return _by_key(tri, topology_hash)


def _by_key(tri: torch.Tensor, topology_hash: object) -> np.ndarray:
    tri_np = tri.detach().cpu().numpy()
    if topology_hash is not None:
        key = b"user:" + repr(topology_hash).encode() + repr(tri_np.shape).encode()
    else:
        key = hashlib.blake2b(np.ascontiguousarray(tri_np).tobytes(), digest_size=16).digest()
        key += repr(tri_np.shape).encode()
    nbr = _CACHE.get(key)
    if nbr is not None:
        _CACHE.move_to_end(key)
        return nbr
    nbr = edge_neighbours(tri_np)
    _CACHE[key] = nbr
    if len(_CACHE) > _CACHE_SIZE:
        _CACHE.popitem(last=False)
    return nbr
