"""``python -m face3d.models.basic_build [PATH]``: regenerate the ``basic`` model asset."""

from __future__ import annotations

import sys
from pathlib import Path

from face3d.models.basic_build.build import write_asset

if __name__ == "__main__":
    out = write_asset(Path(sys.argv[1]) if len(sys.argv) > 1 else None)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB)")
