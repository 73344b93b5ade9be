"""Resuming a batch: items are keyed by the content hash of their photos and the settings.

Every finished item folder holds ``batch.json`` (written into the temporary folder before the
folder is renamed into place), so an item folder that exists is complete. ``--resume`` reuses
an item when its ``batch.json`` says ``ok``, carries the same fingerprint, and every output file
it lists is still there with its size (a deleted or truncated output means the item is redone).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any, Iterable, Mapping

MARKER = "batch.json"
_CHUNK = 1 << 20


def content_hash(paths: Iterable[Path]) -> str | None:
    """SHA-256 (hex) over the bytes of every file in order; ``None`` if one cannot be read."""
    h = hashlib.sha256()
    try:
        for p in paths:
            h.update(str(Path(p).name).encode())
            with open(p, "rb") as fh:
                while chunk := fh.read(_CHUNK):
                    h.update(chunk)
    except OSError:
        return None
    return h.hexdigest()


def fingerprint(paths: Iterable[Path], settings: Mapping[str, Any]) -> str | None:
    """The resume key of an item: SHA-256 of its content hash and the canonical JSON settings."""
    content = content_hash(paths)
    if content is None:
        return None
    blob = json.dumps(dict(settings), sort_keys=True, default=str).encode()
    return hashlib.sha256(content.encode() + b"\0" + blob).hexdigest()


def done_record(item_dir: Path, fp: str | None) -> dict[str, Any] | None:
    """The stored record of a finished item whose fingerprint is ``fp``, else ``None``."""
    if fp is None:
        return None
    try:
        rec = json.loads((item_dir / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(rec, dict) or rec.get("status") != "ok" or rec.get("fingerprint") != fp:
        return None
    files = rec.get("files", {})
    if not isinstance(files, dict) or not all(_has_size(item_dir / str(f), size) for f, size in files.items()):
        return None
    return rec


def _has_size(path: Path, size: object) -> bool:
    try:
        return path.is_file() and path.stat().st_size == size
    except OSError:
        return False


def clean_stale_temps(out: Path) -> list[Path]:
    """Remove temporary item folders left by a killed run (``.<name>.*.tmp`` and ``.old-*``)."""
    removed = []
    for sub in ("items", "people"):
        root = out / sub
        if not root.is_dir():
            continue
        for p in sorted(root.rglob(".*")):
            if p.is_dir() and (p.name.endswith(".tmp") or ".old-" in p.name):
                shutil.rmtree(p, ignore_errors=True)
                removed.append(p)
    return removed
