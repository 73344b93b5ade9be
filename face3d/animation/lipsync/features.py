"""Log-mel filterbank frames of 16 kHz speech at 100 frames/s, the input of the viseme classifier.

Frame i is centred on time (i + 0.5) / 100 s, the same instant as frame i of
:func:`face3d.animation.lipsync.evaluate.viseme_frames`, so the classifier's outputs need no
shift. Window: 25 ms Hann, 512-point FFT, ``N_MELS`` triangular HTK-mel bands over 60–7600 Hz,
natural log of the band power; then per-utterance mean/variance normalisation per band (CMVN),
which removes the recording's gain and a fixed channel colouring.
"""

from __future__ import annotations

import numpy as np

from face3d.errors import BadInputError

RATE = 16000
HOP = 160  # samples per frame (10 ms)
WIN = 400  # 25 ms
N_FFT = 512
N_MELS = 40
F_MIN, F_MAX = 60.0, 7600.0


def _hz_to_mel(f: np.ndarray) -> np.ndarray:
    return 2595.0 * np.log10(1.0 + f / 700.0)


def _mel_to_hz(m: np.ndarray) -> np.ndarray:
    return 700.0 * (10.0 ** (m / 2595.0) - 1.0)


def mel_filterbank(n_mels: int = N_MELS, n_fft: int = N_FFT, rate: int = RATE, f_min: float = F_MIN, f_max: float = F_MAX) -> np.ndarray:
    """(n_mels, n_fft // 2 + 1) float32 triangular filters, HTK mel scale, peak 1."""
    edges = _mel_to_hz(np.linspace(_hz_to_mel(np.array(f_min)), _hz_to_mel(np.array(f_max)), n_mels + 2))
    bins = np.fft.rfftfreq(n_fft, 1.0 / rate)
    lo, mid, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    up = (bins[None] - lo) / (mid - lo)
    down = (hi - bins[None]) / (hi - mid)
    return np.clip(np.minimum(up, down), 0.0, None).astype(np.float32)


_FB = mel_filterbank()
_WINDOW = np.hanning(WIN + 2)[1:-1].astype(np.float32)


def n_frames(n_samples: int) -> int:
    """Frames for ``n_samples`` at 16 kHz: round(duration × 100), as ``viseme_frames`` counts them."""
    return int(round(n_samples / HOP))


_WARPED: dict[float, np.ndarray] = {}


def warped_filterbank(warp: float) -> np.ndarray:
    """:func:`mel_filterbank` with band edges scaled by ``warp`` (vocal-tract length perturbation:
    > 1 reads a shorter vocal tract's formants as a longer one's), top edge at most 8 kHz."""
    key = round(float(warp), 2)
    if key not in _WARPED:
        _WARPED[key] = mel_filterbank(f_min=F_MIN * key, f_max=min(F_MAX * key, RATE / 2.0))
    return _WARPED[key]


def log_mel(audio: np.ndarray, normalize: bool = True, warp: float = 1.0) -> np.ndarray:
    """(T, N_MELS) float32 log-mel frames of mono 16 kHz float ``audio`` (N,), T = :func:`n_frames`;
    ``warp`` != 1 uses :func:`warped_filterbank` (a training augmentation)."""
    audio = np.asarray(audio, np.float32)
    if audio.ndim != 1:
        raise BadInputError(f"log_mel: audio must be mono (N,), got shape {audio.shape}")
    t = n_frames(audio.shape[0])
    if t == 0:
        return np.zeros((0, N_MELS), np.float32)
    pad = np.pad(audio, (WIN, WIN + t * HOP))
    starts = WIN + np.arange(t) * HOP + HOP // 2 - WIN // 2
    frames = pad[starts[:, None] + np.arange(WIN)[None]] * _WINDOW
    power = np.abs(np.fft.rfft(frames, N_FFT, axis=1)) ** 2
    fb = _FB if warp == 1.0 else warped_filterbank(warp)
    feats = np.log(power.astype(np.float32) @ fb.T + 1e-6)
    if normalize:
        feats = (feats - feats.mean(0)) / (feats.std(0) + 1e-3)
    return feats.astype(np.float32)
