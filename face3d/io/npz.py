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
    p = Path(path)
    try:
        with np.load(p, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except FileNotFoundError:
        raise error(p, "file not found") from None
    except Exception as exc:  # zip, header and pickle errors all mean an unreadable file
        raise error(p, f"not a readable {what} ({type(exc).__name__}: {exc})") from None
