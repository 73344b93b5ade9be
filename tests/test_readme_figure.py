"""scripts/make_readme_figure.py makes the README's picture; the committed picture is small."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from face3d.testing import load_script

REPO = Path(__file__).resolve().parents[1]


def _script():
    return load_script(REPO / "scripts" / "make_readme_figure.py")


def test_committed_picture_is_small_and_in_the_readme() -> None:
    png = REPO / "docs" / "images" / "readme.png"
    assert png.stat().st_size < 400 * 1024
    with Image.open(png) as im:
        assert im.size == (6 * 200, 200)
    assert "](docs/images/readme.png)" in (REPO / "README.md").read_text()


def test_face_crop_centres_the_points() -> None:
    img = np.zeros((100, 200, 3), np.uint8)
    img[40:60, 140:160] = 255                          # a white square around the "face"
    pts = np.array([[140.0, 40.0], [160.0, 60.0]])
    crop = _script().face_crop(img, pts, size=40, margin=2.0)  # a 40-px square around it, resized to 40
    assert crop.shape == (40, 40, 3)
    assert crop[20, 20].min() == 255 and crop[2, 2].max() == 0 and crop[:, :10].max() == 0


@pytest.mark.slow
def test_make_figure_small(tmp_path: Path) -> None:
    out = _script().make_figure(tmp_path / "fig.png", size=48)
    with Image.open(out) as im:
        assert im.size == (6 * 48, 48)
        strip = np.asarray(im.convert("RGB")).astype(int)
    panels = [strip[:, i * 48 : (i + 1) * 48] for i in range(6)]
    assert all(p.std() > 10 for p in panels)                     # every panel shows something
    assert np.abs(panels[2] - panels[4]).mean() > 5               # the two side views differ
