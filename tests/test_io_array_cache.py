"""The disk cache of arrays (face3d.io.array_cache) and the texture stage's cached UV raster and mirror map."""

from __future__ import annotations

import io
import os

import numpy as np
import pytest
import torch

from face3d.io import array_cache
from face3d.io.array_cache import ContentMemo, cache_path, cached_arrays, digest


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FACE3D_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("FACE3D_DISK_CACHE", raising=False)
    return tmp_path / "cache"


def counting(values: dict[str, np.ndarray]):
    calls = []

    def compute():
        calls.append(1)
        return {k: v.copy() for k, v in values.items()}

    return compute, calls


def test_digest_depends_on_values_shape_and_dtype():
    a = np.arange(6, dtype=np.float32)
    assert digest(a) == digest(a.copy()) == digest(torch.from_numpy(a))
    assert digest(a) != digest(a.reshape(2, 3))
    assert digest(a) != digest(a.astype(np.float64))
    b = a.copy()
    b[3] = np.nextafter(b[3], np.float32(10))
    assert digest(a) != digest(b)
    assert digest(a, 1) != digest(a, 2)


def test_second_call_reads_the_stored_arrays(cache):
    values = {"x": np.arange(12, dtype=np.int32).reshape(3, 4), "y": np.linspace(0, 1, 5, dtype=np.float32)}
    compute, calls = counting(values)
    first = cached_arrays("t", "k1", ("x", "y"), compute)
    second = cached_arrays("t", "k1", ("x", "y"), compute)
    assert len(calls) == 1
    for got in (first, second):
        assert set(got) == {"x", "y"}
        np.testing.assert_array_equal(got["x"], values["x"])
        assert got["x"].dtype == np.int32 and got["y"].dtype == np.float32
        np.testing.assert_array_equal(got["y"], values["y"])
    assert cache_path("t", "k1") == cache / "t" / "k1.npz" and cache_path("t", "k1").is_file()
    assert [p.name for p in (cache / "t").iterdir()] == ["k1.npz"]  # no temporary left behind


def test_another_key_recomputes(cache):
    compute, calls = counting({"x": np.ones(3)})
    cached_arrays("t", "a", ("x",), compute)
    cached_arrays("t", "b", ("x",), compute)
    assert len(calls) == 2


def test_entry_holding_another_key_or_missing_a_name_is_recomputed(cache):
    compute, calls = counting({"x": np.ones(3)})
    cached_arrays("t", "a", ("x",), compute)
    os.replace(cache_path("t", "a"), cache_path("t", "b"))  # a file under the wrong name
    out = cached_arrays("t", "b", ("x",), compute)
    assert len(calls) == 2 and np.array_equal(out["x"], np.ones(3))
    compute2, calls2 = counting({"x": np.ones(3), "z": np.zeros(2)})
    out = cached_arrays("t", "b", ("x", "z"), compute2)  # the stored entry lacks 'z'
    assert len(calls2) == 1 and np.array_equal(out["z"], np.zeros(2))


@pytest.mark.parametrize("damage", ["truncate", "flip", "garbage", "empty"])
def test_corrupt_entry_is_recomputed_and_rewritten(cache, damage):
    values = {"x": np.arange(4000, dtype=np.float64)}
    compute, calls = counting(values)
    cached_arrays("t", "k", ("x",), compute)
    p = cache_path("t", "k")
    data = bytearray(p.read_bytes())
    if damage == "truncate":
        data = data[: len(data) // 2]
    elif damage == "flip":
        data[len(data) // 2] ^= 0xFF  # inside the array's bytes: the zip CRC no longer matches
    elif damage == "garbage":
        data = bytearray(b"not an npz at all" * 10)
    else:
        data = bytearray()
    p.write_bytes(bytes(data))
    out = cached_arrays("t", "k", ("x",), compute)
    assert len(calls) == 2
    np.testing.assert_array_equal(out["x"], values["x"])
    again = cached_arrays("t", "k", ("x",), compute)  # rewritten: read back now
    assert len(calls) == 2 and np.array_equal(again["x"], values["x"])


def test_check_rejects_entries_with_wrong_shapes(cache):
    compute, calls = counting({"x": np.ones(3)})
    cached_arrays("t", "k", ("x",), compute)
    out = cached_arrays("t", "k", ("x",), compute, check=lambda m: m["x"].shape == (4,))
    assert len(calls) == 2 and out["x"].shape == (3,)


def test_write_is_atomic_and_failures_are_not_errors(cache, monkeypatch):
    compute, calls = counting({"x": np.ones(3)})

    def broken_savez(fh, **arrays):
        fh.write(b"PK partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(array_cache.np, "savez", broken_savez)
    out = cached_arrays("t", "k", ("x",), compute)  # the write fails: the result still comes back
    assert np.array_equal(out["x"], np.ones(3))
    assert not cache_path("t", "k").exists()  # nothing half-written under the final name
    assert list((cache / "t").iterdir()) == []  # and no temporary left


def test_disabled_cache_neither_reads_nor_writes(cache, monkeypatch):
    monkeypatch.setenv("FACE3D_DISK_CACHE", "0")
    compute, calls = counting({"x": np.ones(3)})
    cached_arrays("t", "k", ("x",), compute)
    cached_arrays("t", "k", ("x",), compute)
    assert len(calls) == 2 and not (cache / "t").exists()


def test_unwritable_cache_folder_still_computes(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    monkeypatch.setenv("FACE3D_CACHE", str(blocker / "cache"))  # below a file: mkdir fails
    compute, calls = counting({"x": np.ones(3)})
    assert np.array_equal(cached_arrays("t", "k", ("x",), compute)["x"], np.ones(3))


# --------------------------------------------------------------------------- the texture stage's maps
def _layout():
    from tests.test_texture_bake import face_patch

    verts, faces, uvs = face_patch(31)
    return verts, faces, uvs


def _fresh_memory_caches(monkeypatch):
    from face3d.texture import symmetry, uv_raster

    monkeypatch.setattr(uv_raster, "_CACHE", ContentMemo(16))
    monkeypatch.setattr(symmetry, "_CACHE", {})


def test_uv_raster_and_mirror_map_from_disk_equal_a_fresh_computation(cache, monkeypatch):
    from face3d.texture import rasterize_uv, symmetry_map
    from face3d.texture.uv_raster import DISK_CACHE_MIN_RESOLUTION

    verts, faces, uvs = _layout()
    R = DISK_CACHE_MIN_RESOLUTION
    monkeypatch.setenv("FACE3D_DISK_CACHE", "0")
    _fresh_memory_caches(monkeypatch)
    ref = rasterize_uv(uvs, faces, R)
    ref_sym = symmetry_map(verts, faces, uvs, faces, ref)
    monkeypatch.setenv("FACE3D_DISK_CACHE", "1")
    for _ in range(2):  # the first call writes the entries, the second reads them
        _fresh_memory_caches(monkeypatch)
        got = rasterize_uv(uvs, faces, R)
        sym = symmetry_map(verts, faces, uvs, faces, got)
        for name in ("tri", "bary", "index", "tri_n", "bary_n", "nearest"):
            a, b = getattr(ref, name), getattr(got, name)
            assert a.dtype == b.dtype and torch.equal(a, b), name
        assert torch.equal(sym.uv, ref_sym.uv) and torch.equal(sym.valid, ref_sym.valid)
        assert float(sym.valid.float().mean()) > 0.9
    assert len(list((cache / "uv_raster").glob("*.npz"))) == 1 and len(list((cache / "symmetry_map").glob("*.npz"))) == 1


def test_changed_model_gets_its_own_entry(cache, monkeypatch):
    from face3d.texture import rasterize_uv, symmetry_map

    verts, faces, uvs = _layout()
    _fresh_memory_caches(monkeypatch)
    a = rasterize_uv(uvs, faces, 256)
    sym_a = symmetry_map(verts, faces, uvs, faces, a)
    moved = uvs.clone()
    moved[:, 0] = 0.1 + 0.8 * moved[:, 0]  # a new layout: narrower in u
    _fresh_memory_caches(monkeypatch)
    b = rasterize_uv(moved, faces, 256)
    assert not torch.equal(a.tri, b.tri) and int(b.mask.sum()) < int(a.mask.sum())
    bent = verts.clone()
    bent[:, 2] += 0.02 * (bent[:, 0] > 0.02).float()  # an asymmetric template: one side 2 cm deeper
    sym_b = symmetry_map(bent, faces, uvs, faces, a)
    assert float(sym_b.valid.float().mean()) < float(sym_a.valid.float().mean()) - 0.2
    assert len(list((cache / "uv_raster").glob("*.npz"))) == 2 and len(list((cache / "symmetry_map").glob("*.npz"))) == 2


def test_corrupt_raster_entry_with_a_valid_key_but_wrong_shape_is_recomputed(cache, monkeypatch):
    from face3d.texture import rasterize_uv

    verts, faces, uvs = _layout()
    _fresh_memory_caches(monkeypatch)
    ref = rasterize_uv(uvs, faces, 256)
    (entry,) = (cache / "uv_raster").glob("*.npz")
    with np.load(entry) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["tri"] = arrays["tri"][:10]  # stored under the right key, but not an R² map
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    entry.write_bytes(buf.getvalue())
    _fresh_memory_caches(monkeypatch)
    got = rasterize_uv(uvs, faces, 256)
    assert torch.equal(got.tri, ref.tri) and torch.equal(got.nearest, ref.nearest)


def test_content_memo_finds_equal_arrays_and_never_a_changed_one():
    memo: ContentMemo[str] = ContentMemo(2)
    a = np.arange(12, dtype=np.float64).reshape(3, 4)
    key = ContentMemo.key((a,), "x")
    assert memo.get(key, (a,)) is None
    assert memo.put(key, (a,), "A") == "A"
    assert memo.get(ContentMemo.key((a.copy(),), "x"), (a.copy(),)) == "A"  # equal content: found
    assert ContentMemo.key((a,), "y") != key and ContentMemo.key((a.astype(np.float32),), "x") != key
    assert ContentMemo.key((a.reshape(4, 3),), "x") != key and ContentMemo.key((a.T,), "x") != key
    a[0, 0] = 99.0  # the memo kept a copy: the changed array is not found under the old key
    assert memo.get(key, (a,)) is None
    assert memo.get(ContentMemo.key((a,), "x"), (a,)) is None
    b, c = np.zeros(3), np.ones(3)
    memo.put(ContentMemo.key((b,)), (b,), "B")
    memo.put(ContentMemo.key((c,)), (c,), "C")  # size 2: the oldest entry (A) goes
    assert len(memo) == 2 and memo.get(key, (np.arange(12, dtype=np.float64).reshape(3, 4),)) is None
    assert memo.get(ContentMemo.key((np.ones(3),)), (np.ones(3),)) == "C"
    forged = ContentMemo.key((b,))  # a key whose arrays differ (as after a CRC collision) is a miss
    assert memo.get(forged, (np.full(3, 2.0),)) is None
    memo.clear()
    assert len(memo) == 0
