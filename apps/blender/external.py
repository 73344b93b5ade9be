"""Running face3d from Blender as a separate process (standard library only, no bpy).

face3d needs numpy 2 and torch; Blender's Python ships its own numpy (1.x for bpy 4.x), so face3d
is never imported into Blender: the add-on runs the ``face3d`` command installed outside Blender
(its path in the add-on preferences, else the one on ``PATH``) and imports what it writes.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from pathlib import Path

NOT_CONFIGURED = ("face3d is not configured: install it outside Blender (pip install face3d, then face3d warmup, in its own "
                  "Python 3.11 environment), then set its 'face3d' command in Edit > Preferences > Add-ons > face3d > "
                  "'face3d executable', or put it on PATH")


class Face3dProcessError(RuntimeError):
    """The face3d command is missing or failed; the message says what to do."""


def find_face3d(configured: str = "") -> Path | None:
    """The face3d command: ``configured`` when it is an executable file, else ``face3d`` on PATH, else None."""
    if configured:
        p = Path(os.path.expanduser(configured))
        return p if p.is_file() and os.access(p, os.X_OK) else None
    found = shutil.which("face3d")
    return Path(found) if found else None


def child_environment() -> dict[str, str]:
    """Blender's environment without what points Python at Blender's own packages."""
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONNOUSERSITE")}


def reconstruct_command(exe: Path, image: str | Path, out: str | Path, model: str = "", extra: str = "") -> list[str]:
    """The command line that reconstructs ``image`` into the folder ``out`` (``model`` empty: face3d's
    default; ``extra``: more options in shell syntax, e.g. ``--texture-resolution 512``)."""
    cmd = [str(exe), "reconstruct", str(image), "-o", str(out)]
    return cmd + (["--model", model] if model else []) + shlex.split(extra)


def run_reconstruct(configured: str, image: str | Path, out: str | Path, model: str = "", extra: str = "",
                    timeout: float = 1800.0) -> Path:
    """Run ``face3d reconstruct`` in its own process; returns the output folder or raises Face3dProcessError."""
    configured = configured.strip()
    exe = find_face3d(configured)
    if exe is None:
        if configured:
            raise Face3dProcessError(f"the configured face3d executable '{configured}' is not an executable file; "
                                     + NOT_CONFIGURED.split(": ", 1)[1])
        raise Face3dProcessError(NOT_CONFIGURED)
    if not Path(image).is_file():
        raise Face3dProcessError(f"{image}: image not found")
    try:
        proc = subprocess.run(reconstruct_command(exe, image, out, model, extra), capture_output=True, text=True,
                              env=child_environment(), timeout=timeout, check=False)
    except (OSError, ValueError, subprocess.TimeoutExpired) as exc:
        raise Face3dProcessError(f"running {exe} failed: {exc}") from None
    if proc.returncode != 0:
        lines = [ln for ln in (proc.stderr or proc.stdout).strip().splitlines() if ln.strip()]
        raise Face3dProcessError(f"face3d reconstruct failed (exit {proc.returncode}): {lines[-1] if lines else 'no message'}")
    return Path(out)
