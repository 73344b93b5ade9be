"""The public API's type hints hold: mypy over the public modules (as docs/sdk.md says)."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PUBLIC = ["face3d/__init__.py", "face3d/errors.py", "face3d/io/atomic.py", "face3d/result.py", "face3d/reconstruction.py",
          "face3d/animation/animation.py", "apps"]


@pytest.mark.slow
def test_mypy_public_api(tmp_path):
    pytest.importorskip("mypy")
    proc = subprocess.run([sys.executable, "-m", "mypy", "--follow-imports=silent", "--cache-dir", str(tmp_path / "cache"), *PUBLIC],
                          check=False, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Success" in proc.stdout
