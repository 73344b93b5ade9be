"""``face3d models install ict``: download ICT-FaceKit at a pinned commit, verify, convert, cache.

The archive is GitHub's zip of ``ICT-VGL/ICT-FaceKit`` at :data:`ICT_COMMIT`. Verification:

* the archive's sha256 is computed and compared with ``sha256=`` when the caller pins one
  (GitHub builds these zips on the fly, so their bytes are not guaranteed stable; the digest
  is recorded in the install manifest either way);
* the zip's own CRCs are checked (corruption);
* the content must be the pinned version: the sha256 of the neutral mesh's polygon and UV
  index arrays (int32 little-endian, as parsed) must equal :data:`ICT_TOPOLOGY_SHA256`,
  measured on the conversion of that commit in ``shared/data/ict_facekit``;
* so must the geometry: :func:`content_fingerprint` (per shape, the RMS and the mean of the
  neutral mesh, of each identity and of each expression delta) must match
  ``assets/ict/content_fingerprint.json`` (written by :func:`write_content_fingerprint` from that
  same conversion) within :data:`FINGERPRINT_ATOL`. A tolerance, not a hash, because the shared
  npz stores float16 deltas and a fresh conversion float32: both summaries move by at most the
  largest rounding error, 0.001 cm.

The converted model (native npz, metres, ARKit names, ``parts='full'``) goes to
``cache_dir()/models/ict/ict-full.npz`` with ``install.json`` beside it; ``load_model('ict')``
finds it there. Without network, put a manually downloaded zip at :func:`manual_archive_path`.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
import urllib.error
import urllib.request
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Mapping

import numpy as np

from face3d.errors import DownloadError, ModelFileError, ModelNotFoundError
from face3d.io.atomic import atomic_path, write_text
from face3d.paths import assets_dir

ICT_REPO = "ICT-VGL/ICT-FaceKit"
ICT_COMMIT = "da5f95a607f5e6b37755b38d3385d7f2853732e5"
ICT_URL = f"https://github.com/{ICT_REPO}/archive/{ICT_COMMIT}.zip"
ICT_TOPOLOGY_SHA256 = "e9bc26ffb008dc5eb7e52c1f493d60f278ce29f608a1d04b986c0fe6bb28a2e2"
ICT_FINGERPRINT = assets_dir() / "ict" / "content_fingerprint.json"
FINGERPRINT_ATOL = 2e-3  # cm: twice the largest float16 storage error of the shared npz's deltas
INSTALLABLE = ("ict",)


@dataclass(frozen=True)
class InstallResult:
    """What an install produced: the converted model, the archive used and its sha256."""

    name: str
    model_path: str
    archive: str
    archive_sha256: str
    source_url: str
    commit: str
    seconds: float


def manual_archive_path() -> Path:
    """Where a manually downloaded ICT-FaceKit zip is picked up: ``cache_dir()/downloads/ICT-FaceKit-<commit>.zip``."""
    from face3d.paths import cache_dir

    return cache_dir() / "downloads" / f"ICT-FaceKit-{ICT_COMMIT}.zip"


def installed_model_path() -> Path:
    from face3d.paths import cache_dir

    return cache_dir() / "models" / "ict" / "ict-full.npz"


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def topology_sha256(arrays: Mapping[str, np.ndarray]) -> str:
    """sha256 of the ``polygons`` and ``uv_polygons`` int32 arrays (little-endian, in that order)."""
    h = hashlib.sha256()
    for key in ("polygons", "uv_polygons"):
        h.update(np.ascontiguousarray(arrays[key], dtype="<i4").tobytes())
    return h.hexdigest()


def content_fingerprint(arrays: Mapping[str, np.ndarray]) -> dict[str, list[float]]:
    """Geometry summary in source units (cm), per block 'neutral' (1 shape), 'identity' (K) and
    'expression' (E): for each shape (V,3), its RMS value and its mean x, y, z, flattened (4 per shape)."""

    def rows(x: np.ndarray) -> list[float]:
        x = np.asarray(x, np.float64)
        return np.concatenate([np.sqrt((x**2).mean((1, 2)))[:, None], x.mean(1)], 1).ravel().tolist()

    return {"neutral": rows(np.asarray(arrays["neutral_vertices"])[None]), "identity": rows(arrays["identity_deltas"]),
            "expression": rows(arrays["expression_deltas"])}


def pinned_fingerprint(path: str | Path = ICT_FINGERPRINT) -> dict[str, list[float]]:
    """The :func:`content_fingerprint` blocks stored by :func:`write_content_fingerprint` (its other keys are provenance)."""
    doc = json.loads(Path(path).read_text(encoding="utf-8"))
    return {k: doc[k] for k in ("neutral", "identity", "expression")}


def fingerprint_mismatch(got: Mapping[str, list[float]], expected: Mapping[str, list[float]], atol: float = FINGERPRINT_ATOL) -> str | None:
    """Why two :func:`content_fingerprint` results differ by more than ``atol``, or None."""
    for key, exp in expected.items():
        g, e = np.asarray(got.get(key, []), np.float64), np.asarray(exp, np.float64)
        if g.shape != e.shape:
            return f"block '{key}' has {g.size // 4} shapes, the pinned version {e.size // 4}"
        err = np.abs(g - e)
        if (err > atol).any():
            return f"block '{key}' differs in shape {int(err.argmax()) // 4} by {err.max():.3g} (tolerance {atol:g})"
    return None


def write_content_fingerprint(source: str | Path, out: str | Path = ICT_FINGERPRINT) -> Path:
    """Write the :func:`content_fingerprint` of an ICT source (npz, FaceXModel folder or zip) as JSON."""
    from face3d.models.ict import read_ict_source

    doc = {"commit": ICT_COMMIT, "units": "cm", "layout": "per shape: rms, mean x, mean y, mean z",
           "generated_by": "face3d.models.install.write_content_fingerprint", **content_fingerprint(read_ict_source(source))}
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    return write_text(out, json.dumps(doc) + "\n")


def download(url: str, dest: Path, timeout: float = 60.0) -> Path:
    """Stream ``url`` to ``dest`` atomically; DownloadError (saying where to put a manual copy) on failure."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp, atomic_path(dest) as tmp:
            with open(tmp, "wb") as fh:
                shutil.copyfileobj(resp, fh, 1 << 20)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise DownloadError(
            f"could not download {url} ({getattr(exc, 'reason', exc)}). Without network: download the ICT-FaceKit "
            f"zip at commit {ICT_COMMIT} (from {ICT_URL}) on another machine and put it at {dest}, "
            "then run 'face3d models install ict' again") from None
    return dest


def install_ict(url: str = ICT_URL, sha256: str | None = None, topology: str = ICT_TOPOLOGY_SHA256,
                fingerprint: Mapping[str, list[float]] | None = None, force: bool = False, timeout: float = 60.0) -> InstallResult:
    """Download (or reuse :func:`manual_archive_path`), verify, convert and cache ICT-FaceKit.

    An existing install is returned as is unless ``force`` (which also re-downloads). ``sha256``:
    expected archive digest (optional, see module docstring); ``topology``: expected
    :func:`topology_sha256` of the content; ``fingerprint``: expected :func:`content_fingerprint`
    (default: the pinned ``assets/ict/content_fingerprint.json``). A failed check deletes the
    archive and raises DownloadError.
    """
    from face3d.models.ict import build_ict_model
    from face3d.models.obj_folder import read_facexmodel

    t0 = time.perf_counter()
    out = installed_model_path()
    manifest = out.with_name("install.json")
    if not force and out.exists() and manifest.exists():
        return InstallResult(**json.loads(manifest.read_text(encoding="utf-8")))
    archive = manual_archive_path()
    if force:
        archive.unlink(missing_ok=True)
    if not archive.exists():
        download(url, archive, timeout)
    digest = file_sha256(archive)
    problem = None
    if sha256 is not None and digest != sha256.lower():
        problem = f"archive sha256 {digest} differs from the expected {sha256}"
    elif not zipfile.is_zipfile(archive):
        problem = "the file is not a zip archive"
    else:
        with zipfile.ZipFile(archive) as zf:
            bad = zf.testzip()
        if bad is not None:
            problem = f"the zip member {bad} is corrupt (CRC mismatch)"
    arrays = None
    if problem is None:
        try:
            arrays = read_facexmodel(archive)
        except ModelFileError as exc:
            problem = f"its content is not ICT-FaceKit's FaceXModel ({exc})"
    if problem is None and arrays is not None and topology_sha256(arrays) != topology:
        problem = f"its mesh is not the pinned version (topology sha256 {topology_sha256(arrays)} != {topology})"
    if problem is None and arrays is not None:
        why = fingerprint_mismatch(content_fingerprint(arrays), fingerprint or pinned_fingerprint())
        if why is not None:
            problem = f"its geometry is not the pinned version ({why})"
    if problem is not None:
        archive.unlink(missing_ok=True)
        raise DownloadError(f"{archive}: {problem}; the file was deleted. Download the zip of {ICT_REPO} at commit "
                            f"{ICT_COMMIT} ({ICT_URL}) again and put it at {archive}")
    assert arrays is not None
    model = build_ict_model(arrays, "full", source=f"{ICT_URL} (sha256 {digest})")
    model.to_npz(out)
    result = InstallResult("ict", str(out), str(archive), digest, url, ICT_COMMIT, round(time.perf_counter() - t0, 2))
    write_text(manifest, json.dumps(asdict(result), indent=2))
    return result


def install(name: str, **options: object) -> InstallResult:
    """Install the named model; only 'ict' is downloadable (FLAME and BFM licences forbid it)."""
    if name == "ict":
        return install_ict(**options)  # type: ignore[arg-type]
    if name in ("flame", "bfm"):
        raise ModelNotFoundError(f"'{name}' cannot be downloaded automatically (licence); see 'face3d models info {name}'")
    if name in ("default", "basic"):
        raise ModelNotFoundError(f"'{name}' ships with face3d; nothing to install")
    raise ModelNotFoundError(f"unknown model {name!r}; installable: {', '.join(INSTALLABLE)}")
