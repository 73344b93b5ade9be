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


VISEME_CLASSES: dict[str, tuple[str, ...]] = {"closure": ("PP",), "labiodental": ("FF",), "rounded": ("oh", "ou"), "open": ("aa",)}
"""What a viewer sees first: lip closures (p/b/m), lower lip to teeth (f/v), rounded vowels, open jaw."""


@dataclass(frozen=True)
class ClassCounts:
    """Frame counts of one viseme class: ``hits`` (both tracks in it), ``true`` (reference), ``pred`` (prediction);
    closure events (runs of the class in the reference): ``events``, ``found`` (overlapped by a predicted run
    starting within ``max_lag``), ``onset_errors_ms`` of the found ones. Add them over clips with ``+``."""

    hits: int = 0
    true: int = 0
    pred: int = 0
    events: int = 0
    found: int = 0
    onset_errors_ms: tuple[float, ...] = ()

    def __add__(self, other: "ClassCounts") -> "ClassCounts":
        return ClassCounts(self.hits + other.hits, self.true + other.true, self.pred + other.pred, self.events + other.events,
                           self.found + other.found, self.onset_errors_ms + other.onset_errors_ms)

    @property
    def recall(self) -> float:
        return self.hits / self.true if self.true else float("nan")

    @property
    def precision(self) -> float:
        return self.hits / self.pred if self.pred else float("nan")

    @property
    def event_recall(self) -> float:
        return self.found / self.events if self.events else float("nan")


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    edges = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)))


def class_counts(pred: np.ndarray, truth: np.ndarray, fps: float = 100.0, max_lag: float = 0.1) -> dict[str, ClassCounts]:
    """Per ``VISEME_CLASSES`` class: frame hits/counts and event detection with onset errors (see :class:`ClassCounts`)."""
    pred, truth = np.asarray(pred), np.asarray(truth)
    if pred.shape != truth.shape or pred.ndim != 1:
        raise BadInputError(f"class_counts: tracks must be 1-D and equal length (got {pred.shape}, {truth.shape})")
    out = {}
    for name, members in VISEME_CLASSES.items():
        ids = [VISEME_INDEX[m] for m in members]
        t, p = np.isin(truth, ids), np.isin(pred, ids)
        p_runs = _runs(p)
        errs = []
        for a, b in _runs(t):
            near = [pa for pa, pb in p_runs if pa < b + max_lag * fps and pb > a - max_lag * fps and abs(pa - a) <= max_lag * fps]
            if near:
                errs.append(min(abs(pa - a) for pa in near) / fps * 1000.0)
        out[name] = ClassCounts(int((t & p).sum()), int(t.sum()), int(p.sum()), len(_runs(t)), len(errs), tuple(errs))
    return out
