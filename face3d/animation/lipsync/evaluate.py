"""Lip-sync quality against ground truth: frame-level viseme accuracy and onset timing error.

Both tracks are sampled at ``fps`` (100 by default): frame i holds the viseme of the phone
covering time (i + 0.5) / fps. Onsets are the frames where the viseme changes; each
ground-truth onset is matched to the nearest predicted onset of the same viseme within
``max_lag`` seconds, and the median |time difference| of matched onsets is reported.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from face3d.animation.lipsync.visemes import VISEME_INDEX, VISEMES
from face3d.errors import BadInputError


@dataclass
class VisemeScore:
    """accuracy in [0, 1]; onset_median_ms; onset_matched (fraction of true onsets matched); n_frames."""

    accuracy: float
    onset_median_ms: float
    onset_matched: float
    n_frames: int


def viseme_frames(labels: Sequence[str], starts: Sequence[float], ends: Sequence[float], duration: float, fps: float = 100.0) -> np.ndarray:
    """(N,) int viseme indices (``VISEMES`` order) at ``fps`` for labelled intervals; gaps are 'sil'."""
    if fps <= 0 or duration < 0:
        raise BadInputError(f"viseme_frames: need fps > 0 and duration >= 0 (got {fps}, {duration})")
    n = int(round(duration * fps))
    t = (np.arange(n) + 0.5) / fps
    out = np.full(n, VISEME_INDEX["sil"], np.int64)
    for lab, a, b in zip(labels, starts, ends):
        if lab not in VISEME_INDEX:
            raise BadInputError(f"viseme_frames: unknown viseme '{lab}' (expected one of {VISEMES})")
        out[(t >= a) & (t < b)] = VISEME_INDEX[lab]
    return out


def _onsets(track: np.ndarray) -> list[tuple[int, int]]:
    change = np.flatnonzero(np.diff(track) != 0) + 1
    return [(int(i), int(track[i])) for i in change]


def score(pred: np.ndarray, truth: np.ndarray, fps: float = 100.0, max_lag: float = 0.2) -> VisemeScore:
    """Compare two viseme index tracks of equal length (see module docstring)."""
    pred, truth = np.asarray(pred), np.asarray(truth)
    if pred.shape != truth.shape or pred.ndim != 1 or pred.size == 0:
        raise BadInputError(f"score: tracks must be 1-D, non-empty and equal length (got {pred.shape}, {truth.shape})")
    acc = float((pred == truth).mean())
    p_on = _onsets(pred)
    errs = []
    t_on = _onsets(truth)
    for i, v in t_on:
        cand = [abs(j - i) for j, w in p_on if w == v and abs(j - i) <= max_lag * fps]
        if cand:
            errs.append(min(cand) / fps * 1000.0)
    med = float(np.median(errs)) if errs else float("nan")
    return VisemeScore(acc, med, len(errs) / max(len(t_on), 1), int(pred.size))
