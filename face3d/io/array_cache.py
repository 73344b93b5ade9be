"""A disk cache of named numpy arrays for results that are slow to compute and depend only on
their inputs (UV rasters, mirror maps of a model's layout): one uncompressed ``.npz`` per key in
``face3d.paths.cache_dir()/<kind>/``.

Reading is cheap (a 30 MB entry loads in tens of milliseconds), written atomically (a temporary
sibling renamed into place, so a crash never leaves a half-written entry under the final name), and
never trusted blindly: an entry that cannot be read, holds another key or lacks an array is
recomputed and rewritten. A cache folder that cannot be written (read-only, full disk) only costs the
recomputation next time. ``FACE3D_DISK_CACHE=0`` turns the cache off.
"""

from __future__ import annotations

import hashlib
import os
import zlib
from collections import OrderedDict
from collections.abc import Hashable
from pathlib import Path
from typing import Callable, Generic, TypeVar

import numpy as np

_KEY = "__cache_key__"


def digest(*parts: object) -> str:
    """A hex SHA-1 of arrays (shape, dtype and bytes; tensors are read on the CPU) and plain values."""
    h = hashlib.sha1()
    for p in parts:
        detach = getattr(p, "detach", None)
        if detach is not None:
            p = detach().cpu().numpy()
        if isinstance(p, np.ndarray):
            h.update(f"{p.shape}{p.dtype.str}".encode())
            h.update(np.ascontiguousarray(p).tobytes())
        else:
            h.update(repr(p).encode())
        h.update(b"|")
    return h.hexdigest()


T = TypeVar("T")


class ContentMemo(Generic[T]):
    """The last ``size`` values computed from numpy arrays, found again by the arrays' content.

    A CRC-32 of each array's bytes (with its shape and dtype, and an ``extra`` hashable) picks the
    entry and a full comparison with the copies kept there confirms it, so a hit is never wrong:
    ~3x cheaper than :func:`digest` (a SHA-1 of a copy of the bytes) on megabyte arrays, for memos
    looked up on every call. Not thread-safe (callers lock)."""

    def __init__(self, size: int) -> None:
        self.size = int(size)
        self._entries: OrderedDict[Hashable, tuple[tuple[np.ndarray, ...], T]] = OrderedDict()

    @staticmethod
    def key(arrays: tuple[np.ndarray, ...], extra: Hashable = ()) -> Hashable:
        """The lookup key of ``arrays`` (numpy arrays) and ``extra``."""
        return extra, tuple((a.shape, a.dtype.str, zlib.crc32(np.ascontiguousarray(a).data)) for a in arrays)

    def get(self, key: Hashable, arrays: tuple[np.ndarray, ...]) -> T | None:
        """The value stored under ``key`` for arrays equal to ``arrays``, or None."""
        hit = self._entries.get(key)
        if hit is None or not all(np.array_equal(kept, a) for kept, a in zip(hit[0], arrays)):
            return None
        return hit[1]

    def put(self, key: Hashable, arrays: tuple[np.ndarray, ...], value: T, copies: bool = True) -> T:
        """Store ``value`` under ``key`` with copies of ``arrays`` (``copies=False``: the arrays
        themselves, which the caller then never changes), dropping the oldest entry when full;
        returns ``value``."""
        self._entries.pop(key, None)
        while len(self._entries) >= max(self.size, 1):
            self._entries.popitem(last=False)
        self._entries[key] = (tuple(a.copy() for a in arrays) if copies else arrays, value)
        return value

    def clear(self) -> None:
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)


def enabled() -> bool:
    """Whether the disk cache is used (env ``FACE3D_DISK_CACHE`` not '0'/'false'/'no'/'off')."""
    return os.environ.get("FACE3D_DISK_CACHE", "1").strip().lower() not in ("0", "false", "no", "off")


def cache_path(kind: str, key: str) -> Path:
    """Where the entry ``key`` of ``kind`` lives (the file may not exist)."""
    from face3d.paths import cache_dir

    return cache_dir() / kind / f"{key}.npz"


def _read(path: Path, key: str, names: tuple[str, ...]) -> dict[str, np.ndarray] | None:
    try:
        with np.load(path, allow_pickle=False) as z:
            if _KEY not in z.files or str(z[_KEY]) != key or not set(names) <= set(z.files):
                return None
            return {k: z[k] for k in z.files if k != _KEY}
    except Exception:  # missing, truncated, not a zip, pickled: all mean "recompute"
        return None


def _write(path: Path, key: str, arrays: dict[str, np.ndarray]) -> None:
    from face3d.io.atomic import atomic_path

    try:
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, **{_KEY: np.array(key)}, **arrays)
    except OSError:  # a read-only or full cache folder: the cache is an optimisation only
        pass


def cached_arrays(kind: str, key: str, names: tuple[str, ...], compute: Callable[[], dict[str, np.ndarray]],
                  check: Callable[[dict[str, np.ndarray]], bool] | None = None) -> dict[str, np.ndarray]:
    """The arrays ``compute()`` returns for ``key``, read from the disk cache when an intact entry
    holds every name in ``names`` (and passes ``check``, e.g. of the shapes), else computed and
    stored. ``kind`` is a folder name (letters, digits, '_' and '-'), ``key`` a digest of everything
    the result depends on (:func:`digest`)."""
    if not enabled():
        return compute()
    try:
        path = cache_path(kind, key)
    except OSError:  # no cache folder can be made (read-only home)
        return compute()
    hit = _read(path, key, names)
    if hit is not None and (check is None or check(hit)):
        return hit
    arrays = {k: np.asarray(v) for k, v in compute().items()}
    missing = set(names) - set(arrays)
    if missing:
        raise KeyError(f"cached_arrays({kind!r}): compute() did not return {sorted(missing)}")
    _write(path, key, arrays)
    return arrays
