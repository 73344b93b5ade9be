"""The exception hierarchy of face3d.

Every error the SDK raises on purpose derives from :class:`Face3DError`, so callers can
catch one type. Each subclass carries a CLI exit code (see ``docs/cli.md``):
0 ok, 1 internal error, 2 bad input, 3 missing optional dependency.
"""

from __future__ import annotations

from typing import Sequence


class Face3DError(Exception):
    """Base class of every face3d error."""

    exit_code: int = 1


class BadInputError(Face3DError, ValueError):
    """An input (file, array, argument) is not what was expected."""

    exit_code = 2


class ShapeError(BadInputError):
    """A tensor argument has the wrong shape or dtype.

    The message names the argument, the expected layout and the shape/dtype seen.
    """

    def __init__(self, name: str, expected: str, got: object) -> None:
        self.name = name
        self.expected = expected
        self.got = got
        super().__init__(f"argument '{name}': expected {expected}, got {got}")


class FileFormatError(BadInputError):
    """A file exists but is of the wrong type, or is corrupt/unreadable."""

    def __init__(self, path: object, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{path}: {reason}")


class ImageError(FileFormatError):
    """An image cannot be decoded or is unusable (too small, empty, ...)."""


class VideoError(FileFormatError):
    """A video has no decodable frames or cannot be opened."""


class AudioError(FileFormatError):
    """An audio file cannot be decoded or is unusable."""


class ModelFileError(FileFormatError):
    """A morphable-model file is missing keys, corrupt, or of an unknown layout."""


class OutputError(BadInputError):
    """An output location cannot be used: a file or link where a folder is wanted, a folder
    that cannot be written, or one holding a previous result (or files face3d did not write)."""


class ModelNotFoundError(Face3DError, LookupError):
    """A model name is unknown or its files are not installed."""

    exit_code = 2


class NoFaceError(BadInputError):
    """No face was found in an image."""

    def __init__(self, path: object, detail: str = "") -> None:
        self.path = str(path)
        msg = f"{path}: no face found"
        super().__init__(msg + (f" ({detail})" if detail else ""))


class MissingDependencyError(Face3DError, ImportError):
    """An optional dependency is not installed; the message says how to install it."""

    exit_code = 3

    def __init__(self, package: str, extra: str | None = None, purpose: str = "") -> None:
        self.package = package
        self.extra = extra
        hint = f'pip install "face3d[{extra}]"' if extra else f"pip install {package}"
        what = f" (needed for {purpose})" if purpose else ""
        super().__init__(f"optional dependency '{package}' is not installed{what}; install it with: {hint}")


class BackendError(Face3DError, RuntimeError):
    """A rendering backend is unavailable or failed."""


class FittingError(Face3DError, RuntimeError):
    """An optimisation diverged or could not start."""


class DownloadError(Face3DError, OSError):
    """A download failed (no network, bad checksum)."""

    exit_code = 2


def check_shape(name: str, t: object, dims: Sequence[int | None], expected: str) -> None:
    """Raise :class:`ShapeError` unless ``t`` has ``len(dims)`` dims matching ``dims``.

    ``None`` in ``dims`` matches any size. ``t`` must expose ``.shape``.
    """
    shape = getattr(t, "shape", None)
    if shape is None:
        raise ShapeError(name, expected, type(t).__name__)
    if len(shape) != len(dims) or any(d is not None and d != s for d, s in zip(dims, shape)):
        raise ShapeError(name, expected, tuple(shape))
