"""Refactoring the fitter's settings must not change a fit: the numbers of three fits (basic and
default model through ``reconstruct``, and a three-frame ``fit_video``) are pinned bit for bit.

``tests/data/fit_reference.npz`` was recorded by ``tests/fit_reference.py`` before every tuning
number of ``face3d/fitting/stages.py`` moved into ``FitConfig`` (the fit is deterministic across
processes: tests/test_fitting_determinism.py). To re-record after an intended change:
``python -c "import numpy as np, sys; sys.path.insert(0, 'tests'); from fit_reference import reference_fits;
np.savez_compressed('tests/data/fit_reference.npz', **reference_fits())"``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

HERE = Path(__file__).parent


@pytest.mark.slow
def test_default_settings_fit_the_recorded_numbers():
    sys.path.insert(0, str(HERE))
    try:
        from fit_reference import reference_fits
    finally:
        sys.path.remove(str(HERE))
    ref = np.load(HERE / "data" / "fit_reference.npz")
    got = reference_fits()
    assert sorted(got) == sorted(ref.files)
    assert np.abs(ref["default_shape"]).max() > 0 and np.abs(ref["video_expression"]).max() > 0  # real fits, not zeros
    for k in ref.files:
        assert got[k].shape == ref[k].shape, k
        assert np.array_equal(got[k], ref[k]), f"{k}: max difference {np.abs(got[k] - ref[k]).max():.3g}"
