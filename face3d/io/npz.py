"""Reading ``.npz`` archives (never with pickles) with face3d's typed errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from face3d.errors import FileFormatError, ModelFileError


def read_npz(path: str | Path, what: str = "npz file", error: type[FileFormatError] = ModelFileError) -> dict[str, np.ndarray]:
    """Every array of the archive at ``path``, by name.

    Raises ``error(path, reason)`` when the file is missing ("file not found") or is not a readable
    npz without pickled objects ("not a readable <what> (...)").
    """
    from face3d.paths import input_problem

    p = Path(path)
    problem = input_problem(p)
    if problem:
        raise error(p, problem)
    try:
        with np.load(p, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except Exception as exc:  # zip, header and pickle errors all mean an unreadable file
        raise error(p, f"not a readable {what} ({load_error_reason(exc)})") from None


def load_error_reason(exc: BaseException) -> str:
    """``np.load``'s error in words for users: a pickle is named as such, without numpy's hint to
    load it 'unsafely' (face3d never unpickles data files: a pickle can run code)."""
    text = str(exc)
    if "pickle" in text.lower() or "object arrays" in text.lower():
        return "it holds pickled Python objects, which face3d never loads (they can run code); save plain numeric arrays"
    return f"{type(exc).__name__}: {text}"
