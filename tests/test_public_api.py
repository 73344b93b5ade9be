"""Every public name of ``face3d`` resolves; ``face3d.render`` renders an animation on an avatar."""

from __future__ import annotations

import numpy as np

import face3d
from face3d.arkit import ARKIT_NAMES


def test_every_public_name_resolves() -> None:
    for name in face3d.__all__:
        assert getattr(face3d, name) is not None, name


def test_render_frames_of_an_animation() -> None:
    weights = np.zeros((2, 52), np.float32)
    weights[1, ARKIT_NAMES.index("jawOpen")] = 1.0
    frames = face3d.render(face3d.Animation(fps=30, arkit=weights), "basic", size=64)
    assert frames.shape == (2, 64, 64, 3) and frames.dtype == np.uint8
    assert (frames < 250).any(axis=-1).mean() > 0.2          # the head covers part of the frame
    assert np.abs(frames[0].astype(int) - frames[1]).max() > 30  # the open jaw changes the picture
