"""The detector imports MediaPipe without its drawing helpers (matplotlib, OpenCV), which still work when used."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytest.importorskip("mediapipe")

SCRIPT = r"""
import json, sys
from face3d.landmarks.detector import _solutions
fd, fm = _solutions()
before = {m: m in sys.modules for m in ("matplotlib.pyplot", "cv2")}
import mediapipe as mp
spec = mp.solutions.drawing_utils.DrawingSpec(color=(1, 2, 3))
style = mp.solutions.drawing_styles.get_default_face_mesh_contours_style()
from mediapipe.python.solutions import drawing_utils
print(json.dumps({"before": before, "after": {m: m in sys.modules for m in ("matplotlib.pyplot", "cv2")},
                  "color": list(spec.color), "styles": len(style), "same": drawing_utils is mp.solutions.drawing_utils,
                  "graphs": [fd.FaceDetection.__name__, fm.FaceMesh.__name__]}))
"""


def test_drawing_helpers_are_deferred_until_used():
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, check=True, cwd=ROOT)
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["before"] == {"matplotlib.pyplot": False, "cv2": False}
    assert got["after"] == {"matplotlib.pyplot": True, "cv2": True}  # loaded on first use
    assert got["color"] == [1, 2, 3] and got["styles"] > 50 and got["same"] is True
    assert got["graphs"] == ["FaceDetection", "FaceMesh"]


def test_nothing_is_deferred_when_mediapipe_was_imported_first():
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    code = ("import sys, mediapipe; from face3d.landmarks.detector import _solutions, _Deferred; _solutions(); "
            "print(type(sys.modules['mediapipe.python.solutions.drawing_utils']).__name__, 'matplotlib.pyplot' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.split() == ["module", "True"]
