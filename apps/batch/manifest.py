"""What a batch works on: a folder (recursive), a glob, one image, or a CSV/JSONL manifest.

Each :class:`Item` is one unit of work with a deterministic output folder ``OUT/<key>``:

* a single photo ``INPUT/sub/a.jpg`` -> key ``items/sub/a`` (``items/sub/a_jpg`` when another
  photo in the same folder has the same stem, e.g. ``a.png``);
* a person id in a manifest groups every row with that id into one item fitted jointly
  -> key ``people/<id>``.

Manifests have a ``path`` column (relative paths are relative to the manifest's folder) and an
optional ``person`` column (alias ``person_id``). CSV needs a header row; JSONL has one JSON
object per line.
"""

from __future__ import annotations

import csv
import glob
import json
import os
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from face3d.errors import BadInputError, FileFormatError

IMAGE_SUFFIXES: frozenset[str] = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})
_PERSON_COLUMNS = ("person", "person_id")
_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True)
class Item:
    """One unit of work: ``paths`` (one photo, or several photos of ``person``) -> ``OUT/key``."""

    key: str
    paths: tuple[Path, ...]
    person: str | None = None


def load_items(source: str | os.PathLike[str]) -> list[Item]:
    """Expand ``source`` (folder, glob, image, ``.csv`` or ``.jsonl`` manifest) into sorted items.

    Raises :class:`BadInputError` when nothing matches or the source does not exist and
    :class:`FileFormatError` (naming file and line) for malformed manifests.
    """
    text = os.fspath(source)
    path = Path(text)
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise BadInputError(f"{path}: no images ({', '.join(sorted(IMAGE_SUFFIXES))}) found in this folder")
        return _photo_items(files, path)
    if path.is_file():
        suffix = path.suffix.lower()
        if suffix == ".csv":
            return _manifest_items(path, _read_csv(path))
        if suffix in (".jsonl", ".ndjson"):
            return _manifest_items(path, _read_jsonl(path))
        if suffix in IMAGE_SUFFIXES:
            return _photo_items([path], path.parent)
        raise FileFormatError(path, "not an image, folder, .csv or .jsonl manifest")
    if glob.has_magic(text):
        files = sorted(Path(p) for p in glob.glob(text, recursive=True) if Path(p).is_file())
        files = [p for p in files if p.suffix.lower() in IMAGE_SUFFIXES]
        if not files:
            raise BadInputError(f"{text}: the glob matches no images")
        root = Path(os.path.commonpath([p.parent.resolve() for p in files]))
        return _photo_items([p.resolve() for p in files], root)
    raise BadInputError(f"{text}: no such file, folder or glob")


def _photo_items(files: list[Path], root: Path) -> list[Item]:
    """One item per photo, keyed by its path relative to ``root`` without the suffix."""
    rel = [p.relative_to(root) if p.is_relative_to(root) else Path(p.name) for p in files]
    stems: defaultdict[Path, int] = defaultdict(int)
    for r in rel:
        stems[r.with_suffix("")] += 1
    items = []
    for p, r in zip(files, rel):
        stem = r.with_suffix("")
        name = stem if stems[stem] == 1 else r.with_name(f"{r.stem}_{r.suffix.lstrip('.').lower()}")
        items.append(Item(key="items/" + _safe_key(name.as_posix()), paths=(p,)))
    return _unique(items, root)


def _safe_key(rel: str) -> str:
    return "/".join(_SAFE.sub("_", part) for part in rel.split("/") if part not in ("", ".", ".."))


def _unique(items: list[Item], where: Path) -> list[Item]:
    seen: dict[str, Item] = {}
    for it in items:
        if it.key in seen:
            raise BadInputError(
                f"{where}: {it.paths[0]} and {seen[it.key].paths[0]} map to the same output folder '{it.key}'"
            )
        seen[it.key] = it
    return sorted(items, key=lambda i: i.key)


def _read_csv(path: Path) -> list[tuple[int, dict[str, str]]]:
    with open(path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        if reader.fieldnames is None or "path" not in [f.strip() for f in reader.fieldnames]:
            raise FileFormatError(path, "line 1: a CSV manifest needs a header row with a 'path' column")
        return [
            (i + 2, {(k or "").strip(): (v or "").strip() for k, v in row.items()}) for i, row in enumerate(reader)
        ]


def _read_jsonl(path: Path) -> list[tuple[int, dict[str, str]]]:
    rows = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise FileFormatError(path, f"line {lineno}: not valid JSON ({exc.msg})") from None
        if not isinstance(obj, dict):
            raise FileFormatError(path, f"line {lineno}: expected a JSON object with a 'path' key")
        rows.append((lineno, {str(k): "" if v is None else str(v) for k, v in obj.items()}))
    return rows


def _manifest_items(manifest: Path, rows: list[tuple[int, dict[str, str]]]) -> list[Item]:
    base = manifest.parent
    singles: list[Path] = []
    people: dict[str, list[Path]] = {}
    for lineno, row in rows:
        raw = row.get("path", "")
        if not raw:
            raise FileFormatError(manifest, f"line {lineno}: empty 'path'")
        p = Path(raw).expanduser()
        p = p if p.is_absolute() else base / p
        person = next((row[c] for c in _PERSON_COLUMNS if row.get(c)), "")
        if person:
            people.setdefault(person, []).append(p)
        else:
            singles.append(p)
    if not singles and not people:
        raise BadInputError(f"{manifest}: the manifest lists no images")
    items = _photo_items(singles, base) if singles else []
    for person, paths in people.items():
        key = _SAFE.sub("_", person).strip("._") or "person"
        items.append(Item(key=f"people/{key}", paths=tuple(paths), person=person))
    return _unique(items, manifest)
