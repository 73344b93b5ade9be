"""What a batch works on: a folder (recursive), a glob, one image, or a CSV/JSONL manifest.

Each :class:`Item` is one unit of work with a deterministic output folder ``OUT/<key>``:

* a single photo ``INPUT/sub/a.jpg`` -> key ``items/sub/a`` (``items/sub/a_jpg`` when another
  photo in the same folder has the same stem, e.g. ``a.png``);
* a person id in a manifest groups every row with that id into one item fitted jointly
  -> key ``people/<id>``.

Keys keep Unicode letters (``张伟.jpg`` -> ``items/张伟``); characters a file system may refuse
become ``_``. When two sources still map to one key (``a b.jpg`` and ``a_b.jpg``, the same file
name in two folders outside the manifest's folder, two person ids), each one whose key is not
its exact name gets ``-`` and 8 hex digits of the SHA-256 of its relative path (or person id)
appended: deterministic, so ``--resume`` finds the same folders. Hidden files and folders
(``._a.jpg``, ``.git/``) are skipped, and so is the batch's own output folder when it lies
inside the input folder. A path listed twice in a manifest is one item (with a note).

Manifests have a ``path`` column (relative paths are relative to the manifest's folder) and an
optional ``person`` column (alias ``person_id``). CSV needs a header row; JSONL has one JSON
object per line.
"""

from __future__ import annotations

import csv
import dataclasses
import glob
import hashlib
import io
import json
import os
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from face3d.errors import BadInputError, FileFormatError

IMAGE_SUFFIXES: frozenset[str] = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})
_PERSON_COLUMNS = ("person", "person_id")
_SAFE = re.compile(r"[^\w.-]+")  # \w is Unicode: letters and digits of every script are kept


@dataclass(frozen=True)
class Item:
    """One unit of work: ``paths`` (one photo, or several photos of ``person``) -> ``OUT/key``."""

    key: str
    paths: tuple[Path, ...]
    person: str | None = None


def load_items(source: str | os.PathLike[str], exclude: str | os.PathLike[str] | None = None,
               notes: list[str] | None = None) -> list[Item]:
    """Expand ``source`` (folder, glob, image, ``.csv`` or ``.jsonl`` manifest) into sorted items.

    Files under ``exclude`` (the batch's output folder) and hidden files are left out; ``notes``
    (when given) receives a line per thing the user should know (a manifest read as cp1252, a
    repeated row). Raises :class:`BadInputError` when nothing matches or the source does not exist
    and :class:`FileFormatError` (naming file and line) for malformed manifests.
    """
    text = os.fspath(source)
    path = Path(text)
    notes = notes if notes is not None else []
    skip = Path(exclude).resolve() if exclude is not None else None
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
                       and _visible(p, path, skip))
        if not files:
            raise BadInputError(f"{path}: no images ({', '.join(sorted(IMAGE_SUFFIXES))}) found in this folder")
        return _photo_items(files, path)
    if path.is_file():
        suffix = path.suffix.lower()
        if suffix == ".csv":
            return _manifest_items(path, _read_csv(path, notes), notes)
        if suffix in (".jsonl", ".ndjson"):
            return _manifest_items(path, _read_jsonl(path, notes), notes)
        if suffix in IMAGE_SUFFIXES:
            return _photo_items([path], path.parent)
        raise FileFormatError(path, "not an image, folder, .csv or .jsonl manifest")
    if glob.has_magic(text):
        files = sorted(Path(p) for p in glob.glob(text, recursive=True) if Path(p).is_file())
        files = [p for p in files if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")
                 and not (skip is not None and p.resolve().is_relative_to(skip))]
        if not files:
            raise BadInputError(f"{text}: the glob matches no images")
        root = Path(os.path.commonpath([p.parent.resolve() for p in files]))
        return _photo_items([p.resolve() for p in files], root)
    raise BadInputError(f"{text}: no such file, folder or glob")


def _visible(p: Path, root: Path, skip: Path | None) -> bool:
    """False for hidden files or files in hidden folders below ``root``, and for files under ``skip``."""
    if any(part.startswith(".") for part in p.relative_to(root).parts):
        return False
    return skip is None or not p.resolve().is_relative_to(skip)


def _photo_items(files: list[Path], root: Path) -> list[Item]:
    """One item per photo, keyed by its path relative to ``root`` without the suffix."""
    rel = [p.relative_to(root) if p.is_relative_to(root) else Path(p.name) for p in files]
    stems: defaultdict[Path, int] = defaultdict(int)
    for r in set(rel):  # a.jpg + a.png -> a_jpg, a_png; the same name twice (two folders) is hashed below
        stems[r.with_suffix("")] += 1
    named = []
    for p, r in zip(files, rel):
        stem = r.with_suffix("")
        name = stem if stems[stem] == 1 else r.with_name(f"{r.stem}_{r.suffix.lstrip('.').lower()}")
        ident = p.relative_to(root).as_posix() if p.is_relative_to(root) else str(p.absolute())
        named.append((name.as_posix(), ident, Item(key="", paths=(p,))))
    return _keyed("items", named)


def _safe_key(rel: str) -> str:
    parts = [_SAFE.sub("_", part).strip(" ") for part in rel.split("/") if part not in ("", ".", "..")]
    return "/".join(("_" + part if part.startswith(".") else part) or "_" for part in parts)


def _short_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()[:8]


def _keyed(prefix: str, named: list[tuple[str, str, Item]], nested: bool = True) -> list[Item]:
    """Give each (name, identity, item) the key ``prefix/<safe name>`` (``/`` in a name makes
    sub-folders when ``nested``); where keys collide, every item whose safe name differs from its
    name gets ``-<hash of identity>`` appended."""
    groups: defaultdict[str, list[tuple[str, str, Item]]] = defaultdict(list)
    for name, ident, item in named:
        groups[_safe_key(name if nested else name.replace("/", "_"))].append((name, ident, item))
    items = []
    for key, members in groups.items():
        exact_names = [ident for name, ident, _ in members if name == key]
        for name, ident, item in members:
            exact = len(members) == 1 or (len(exact_names) == 1 and ident == exact_names[0])
            items.append(dataclasses.replace(item, key=f"{prefix}/{key}" if exact else f"{prefix}/{key}-{_short_hash(ident)}"))
    return _unique(items)


def _unique(items: list[Item]) -> list[Item]:
    seen: dict[str, Item] = {}
    for it in items:
        if it.key in seen:  # only if a name collides with another name's hashed key: vanishingly rare
            raise BadInputError(f"{it.paths[0]} and {seen[it.key].paths[0]} map to the same output folder '{it.key}'; "
                                f"rename one of them")
        seen[it.key] = it
    return sorted(items, key=lambda i: i.key)


def _decode(path: Path, notes: list[str]) -> str:
    """The text of a manifest: UTF-8 (with or without BOM), else Windows-1252 with a note, else
    FileFormatError naming the line of the first byte that is neither."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        utf8_error = exc
    try:
        text = data.decode("cp1252")
    except UnicodeDecodeError:
        line = data[: utf8_error.start].count(b"\n") + 1
        raise FileFormatError(path, f"line {line}: not UTF-8 text (byte 0x{data[utf8_error.start]:02x}) nor Windows-1252; "
                                    f"save the manifest as UTF-8") from None
    notes.append(f"{path}: not UTF-8; read as Windows-1252 (Latin-1). Save it as UTF-8 to be sure of the names")
    return text


def _read_csv(path: Path, notes: list[str]) -> list[tuple[int, dict[str, str]]]:
    reader = csv.DictReader(io.StringIO(_decode(path, notes), newline=""))
    if reader.fieldnames is None or "path" not in [f.strip() for f in reader.fieldnames]:
        raise FileFormatError(path, "line 1: a CSV manifest needs a header row with a 'path' column")
    return [(reader.line_num, {(k or "").strip(): (v or "").strip() for k, v in row.items() if isinstance(v, str) or v is None})
            for row in reader]


def _read_jsonl(path: Path, notes: list[str]) -> list[tuple[int, dict[str, str]]]:
    rows = []
    for lineno, line in enumerate(_decode(path, notes).splitlines(), start=1):
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


def _manifest_items(manifest: Path, rows: list[tuple[int, dict[str, str]]], notes: list[str]) -> list[Item]:
    base = manifest.parent
    singles: dict[Path, int] = {}
    people: dict[str, dict[Path, int]] = {}
    for lineno, row in rows:
        raw = row.get("path", "")
        if not raw:
            raise FileFormatError(manifest, f"line {lineno}: empty 'path'")
        p = Path(raw).expanduser()
        p = p if p.is_absolute() else base / p
        person = next((row[c] for c in _PERSON_COLUMNS if row.get(c)), "")
        seen = people.setdefault(person, {}) if person else singles
        same = next((q for q in seen if os.path.normpath(q) == os.path.normpath(p)), None)
        if same is not None:
            who = f" for person {person!r}" if person else ""
            notes.append(f"{manifest}: line {lineno} repeats {raw!r}{who} (line {seen[same]}); used once")
            continue
        seen[p] = lineno
    if not singles and not people:
        raise BadInputError(f"{manifest}: the manifest lists no images")
    items = _photo_items(list(singles), base) if singles else []
    named = [(person, person, Item(key="", paths=tuple(paths), person=person)) for person, paths in people.items()]
    return _unique(items + _keyed("people", named, nested=False))
