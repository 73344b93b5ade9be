"""Atomic file and folder writes: write to a temporary sibling, then ``os.replace``.

A crash or Ctrl-C never leaves a half-written file at the destination path.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import IO, Iterator

from face3d.errors import OutputError

OWNED_FILES = ".face3d-files.json"
"""Name of the list of the files face3d wrote into an output folder (relative POSIX paths)."""


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success rename it onto ``path``.

    The temporary keeps ``path``'s suffix so writers that dispatch on the extension work.
    On any exception the temporary is removed and the destination is untouched.
    """
    dest = Path(path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.stem}.", suffix=f".tmp{dest.suffix}", dir=dest.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    os.chmod(tmp_path, 0o666 & ~_umask())
    try:
        yield tmp_path
        os.replace(tmp_path, dest)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike[str], mode: str = "w", **kwargs: object) -> Iterator[IO]:
    """Open a temporary file for writing and move it onto ``path`` when the block succeeds."""
    with atomic_path(path) as tmp:
        with open(tmp, mode, **kwargs) as fh:  # type: ignore[call-overload]
            yield fh
            fh.flush()
            os.fsync(fh.fileno())


def write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Atomically write ``data`` to ``path``; returns the path."""
    with atomic_open(path, "wb") as fh:
        fh.write(data)
    return Path(path)


def write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Atomically write UTF-8 ``text`` to ``path``; returns the path."""
    with atomic_open(path, "w", encoding="utf-8") as fh:
        fh.write(text)
    return Path(path)


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike[str], overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary folder next to ``path``; on success it replaces ``path`` whole.

    If the block raises, the temporary folder is deleted and any existing ``path`` is kept.
    """
    dest = Path(path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent))
    os.chmod(tmp, 0o777 & ~_umask())
    try:
        yield tmp
        if dest.exists():
            if not overwrite:
                raise FileExistsError(dest)
            old = dest.with_name(f".{dest.name}.old-{os.getpid()}")
            os.replace(dest, old)
            os.replace(tmp, dest)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _nearest_existing(path: Path) -> Path:
    p = path
    while not p.exists() and not p.is_symlink() and p != p.parent:
        p = p.parent
    return p


def owned_files(folder: str | os.PathLike[str]) -> list[str] | None:
    """The files face3d wrote into ``folder`` the last time (relative POSIX paths), or None if
    ``folder`` holds no face3d result."""
    listing = Path(folder) / OWNED_FILES
    if not listing.is_file():
        return None
    import json

    try:
        files = json.loads(listing.read_text(encoding="utf-8"))["files"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise OutputError(f"{listing}: unreadable list of face3d's own files ({exc}); move it away or delete the folder") from exc
    return [str(f) for f in files if isinstance(f, str) and f and not Path(f).is_absolute() and ".." not in Path(f).parts]


def check_output_dir(path: str | os.PathLike[str], overwrite: bool = False) -> Path:
    """Check, before any work, that ``path`` can receive a face3d result; returns it as a Path.

    Raises :class:`OutputError` (exit code 2) when ``path`` is a symbolic link or a file, when a
    parent is a file, when the nearest existing folder cannot be written, or when ``path`` holds a
    previous face3d result and ``overwrite`` is False. Creates nothing.
    """
    dest = Path(path)
    if dest.is_symlink():
        raise OutputError(f"{dest}: is a symbolic link; give a real folder as the output")
    if dest.exists() and not dest.is_dir():
        raise OutputError(f"{dest}: is a file, not a folder; give a folder as the output")
    _check_writable(dest, "a folder")
    if dest.is_dir() and not overwrite and owned_files(dest) is not None:
        raise OutputError(f"{dest}: holds a previous face3d result; pass --overwrite (SDK: overwrite=True) to replace its files")
    return dest


def _check_writable(dest: Path, what: str, start: Path | None = None) -> None:
    """OutputError unless the nearest existing folder at or above ``start`` (default ``dest``) accepts a new file."""
    base = _nearest_existing((start or dest).absolute())
    if not base.is_dir():
        raise OutputError(f"{dest}: cannot create {what} there, {base} is a file")
    try:
        with tempfile.TemporaryFile(dir=base):
            pass
    except OSError as exc:
        raise OutputError(f"{dest}: cannot write into {base} ({exc.strerror or exc})") from exc


def check_output_file(path: str | os.PathLike[str]) -> Path:
    """Check, before any work, that a file can be written at ``path``; returns it as a Path.

    Raises :class:`OutputError` (exit code 2) when ``path`` is a folder, ends in a separator, has
    a file as a parent, or when the nearest existing folder cannot be written (read-only file
    system, no permission). An existing file there is replaced atomically later. Creates nothing.
    """
    text = os.fspath(path)
    dest = Path(text)
    if dest.is_dir() or text.endswith((os.sep, "/")) or dest.name in ("", ".", ".."):
        raise OutputError(f"{text}: is a folder; give a file name as the output")
    _check_writable(dest, "a file", dest.parent)
    return dest


def _files_below(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file() or p.is_symlink())


@contextlib.contextmanager
def output_dir(path: str | os.PathLike[str], overwrite: bool = False) -> Iterator[Path]:
    """Yield an empty temporary folder; on success move its files into the folder ``path``.

    Files in ``path`` that face3d did not write are never touched: a new file whose name is
    taken by such a file raises :class:`OutputError` and nothing is moved. With ``overwrite``
    the files of the previous result (listed in ``path/.face3d-files.json``) are replaced or
    removed; without it a previous result is refused. A missing ``path`` is created whole by
    one rename. If the block raises, ``path`` is left as it was.
    """
    import json

    dest = check_output_dir(path, overwrite)
    if not dest.exists():
        with atomic_dir(dest, overwrite=False) as tmp:
            yield tmp
            write_text(tmp / OWNED_FILES, json.dumps({"files": _files_below(tmp)}, indent=1))
        return
    try:
        tmp = Path(tempfile.mkdtemp(prefix=".face3d-", suffix=".tmp", dir=dest))
    except OSError as exc:
        raise OutputError(f"{dest}: cannot write into it ({exc.strerror or exc})") from exc
    try:
        yield tmp
        new = _files_below(tmp)
        old = set(owned_files(dest) or [])
        clash = [f for f in new if (dest / f).exists() or (dest / f).is_symlink()]
        foreign = [f for f in clash if f not in old or not (dest / f).is_file() or (dest / f).is_symlink()]
        if foreign:
            shown = ", ".join(foreign[:5]) + (" ..." if len(foreign) > 5 else "")
            raise OutputError(f"{dest}: would overwrite files face3d did not write ({shown}); choose an empty or new folder")
        write_text(dest / OWNED_FILES, json.dumps({"files": sorted(old | set(new))}, indent=1))  # an interrupted move stays ours
        for f in sorted(old - set(new)):  # the previous result's files that this result does not have
            stale = dest / f
            if stale.is_file() and not stale.is_symlink():
                stale.unlink()
                _prune_empty(stale.parent, dest)
        for f in new:
            target = dest / f
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp / f, target)
        write_text(dest / OWNED_FILES, json.dumps({"files": new}, indent=1))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _prune_empty(folder: Path, stop: Path) -> None:
    """Remove ``folder`` and its parents up to (not including) ``stop`` while they are empty."""
    while folder != stop and stop in folder.parents:
        try:
            folder.rmdir()
        except OSError:
            return
        folder = folder.parent
