"""Viseme activations over time with coarticulation, loudness-driven jaw and natural blinks.

Coarticulation follows Cohen & Massaro (1993), "Modeling coarticulation in synthetic visual
speech": every phone segment s has a target (its viseme) and a dominance function
``D_s(t) = a_v * exp(-(|t - c_s| / (h_s + tau)) ** k)`` centred on the segment (c_s centre,
h_s half-duration, ``tau`` spill-over into neighbours, ``k`` sharpness, ``a_v`` the viseme's
dominance magnitude ``visemes.DOMINANCE``: lip closures high, tongue-only consonants low).
The activation of viseme v is ``sum_{s: v_s = v} D_s(t) / sum_s D_s(t)`` — a smooth blend in
which weak segments take on their neighbours' lip shapes, never a step function.
"""

from __future__ import annotations

import numpy as np

from face3d.animation.lipsync.visemes import DOMINANCE, VISEME_INDEX, VISEMES
from face3d.errors import BadInputError

TAU = 0.04
SHARPNESS = 2.0
REACH = 0.35  # seconds beyond a segment where its dominance is still evaluated


def viseme_activations(labels: list[str], starts: np.ndarray, ends: np.ndarray, n_frames: int, fps: float,
                       tau: float = TAU, sharpness: float = SHARPNESS) -> np.ndarray:
    """(T, 15) activations (rows sum to 1) of viseme-labelled segments sampled at frame times i / fps."""
    if fps <= 0 or n_frames < 0:
        raise BadInputError(f"viseme_activations: need fps > 0 and n_frames >= 0 (got {fps}, {n_frames})")
    t = np.arange(n_frames) / fps
    num = np.zeros((n_frames, len(VISEMES)), np.float64)
    den = np.full(n_frames, 1e-12)
    for lab, a, b in zip(labels, starts, ends):
        v = VISEME_INDEX[lab]
        c, h = 0.5 * (a + b), max(0.5 * (b - a), 0.005)
        i0 = max(int(np.floor((a - REACH) * fps)), 0)
        i1 = min(int(np.ceil((b + REACH) * fps)) + 1, n_frames)
        if i1 <= i0:
            continue
        d = DOMINANCE[v] * np.exp(-((np.abs(t[i0:i1] - c) / (h + tau)) ** sharpness))
        num[i0:i1, v] += d
        den[i0:i1] += d
    out = num / den[:, None]
    empty = den <= 1e-9
    out[empty] = 0.0
    out[empty, VISEME_INDEX["sil"]] = 1.0
    return out.astype(np.float32)


CLOSURE_WIDTH = 0.03  # seconds added to a closure's half-duration in :func:`closure_strength`


def closure_strength(labels: list[str], starts: np.ndarray, ends: np.ndarray, n_frames: int, fps: float,
                     closures: tuple[str, ...] = ("PP",)) -> np.ndarray:
    """(T,) in [0, 1]: how firmly the lips must be shut at frame times i / fps. Each closure segment
    (p/b/m) gives ``exp(-(|t - c| / (h + CLOSURE_WIDTH)) ** 2)`` (c centre, h half-duration), so the
    frame nearest even a 10 ms closure gets >= 0.79 at 30 fps (a frame is at most 16.7 ms away),
    where the dominance blend alone leaves the lips apart between two open vowels."""
    if fps <= 0 or n_frames < 0:
        raise BadInputError(f"closure_strength: need fps > 0 and n_frames >= 0 (got {fps}, {n_frames})")
    t = np.arange(n_frames) / fps
    out = np.zeros(n_frames, np.float64)
    for lab, a, b in zip(labels, starts, ends):
        if lab in closures:
            c, h = 0.5 * (a + b), max(0.5 * (b - a), 0.0)
            out = np.maximum(out, np.exp(-((np.abs(t - c) / (h + CLOSURE_WIDTH)) ** 2)))
    return out.astype(np.float32)


def loudness(audio: np.ndarray, rate: int, n_frames: int, fps: float, range_db: float = 40.0) -> np.ndarray:
    """(T,) loudness in [0, 1] per frame: RMS over a 2-frame window in dB, mapped from
    (95th-percentile level - ``range_db``) -> 0 to the 95th-percentile level -> 1."""
    x = np.asarray(audio, np.float32)
    if x.size == 0 or n_frames == 0:
        return np.zeros(n_frames, np.float32)
    win = max(int(2 * rate / fps), 1)
    centres = (np.arange(n_frames) / fps * rate).astype(np.int64)
    csum = np.concatenate([[0.0], np.cumsum(x.astype(np.float64) ** 2)])
    lo = np.clip(centres - win // 2, 0, x.size)
    hi = np.clip(centres + win // 2, 0, x.size)
    rms = np.sqrt((csum[hi] - csum[lo]) / np.maximum(hi - lo, 1))
    db = 20 * np.log10(rms + 1e-8)
    top = np.percentile(db, 95)
    if top < -70:  # digital silence
        return np.zeros(n_frames, np.float32)
    return np.clip((db - (top - range_db)) / range_db, 0.0, 1.0).astype(np.float32)


def blinks(n_frames: int, fps: float, per_minute: float = 17.0, seed: int = 0) -> np.ndarray:
    """(T,) eyeBlink weights: blinks at gamma-distributed intervals (mean 60/per_minute s, at
    least 1.2 s apart), each closing in 0.08 s, held 0.03 s, reopening in 0.15 s (raised cosine)."""
    if per_minute < 0:
        raise BadInputError(f"blinks: per_minute must be >= 0, got {per_minute}")
    w = np.zeros(n_frames, np.float32)
    if per_minute == 0 or n_frames == 0:
        return w
    rng = np.random.default_rng(seed)
    mean = 60.0 / per_minute
    t = rng.uniform(0.3, mean)
    times = np.arange(n_frames) / fps
    dur = n_frames / fps
    close, hold, reopen = 0.08, 0.03, 0.15
    while t < dur:
        rel = times - t
        up = (rel >= 0) & (rel < close)
        w[up] = np.maximum(w[up], 0.5 - 0.5 * np.cos(np.pi * rel[up] / close))
        held = (rel >= close) & (rel < close + hold)
        w[held] = 1.0
        down = (rel >= close + hold) & (rel < close + hold + reopen)
        w[down] = np.maximum(w[down], 0.5 + 0.5 * np.cos(np.pi * (rel[down] - close - hold) / reopen))
        t += max(rng.gamma(4.0, mean / 4.0), 1.2)
    return w
