"""Audio -> lip sync: timed visemes (Oculus 15) -> ARKit weights.

The visemes come from pocketsphinx's forced alignment when the transcript is known, else from
pocketsphinx's word recognition aligned to the audio and read together with it by this project's
frame-level viseme classifier (or, on request, the classifier fused with phone recognition, or
either alone);
see :mod:`face3d.animation.lipsync.timing`.

``animate_audio(path, text=None)`` returns a :class:`face3d.Animation` whose ``arkit`` channel
is the coarticulated viseme blend (``coarticulation``) mapped through ``visemes.VISEME_TO_ARKIT``,
with ``jawOpen`` scaled by loudness and optional blinks; ``visemes`` holds the activations,
``meta['viseme_segments']`` the timed visemes ([viseme, start s, end s]), ``meta['phonemes']``
the timed phones when the track came from phones (else []) and ``meta['phoneme_method']`` the
source ('align', 'align-split', 'words', 'classify', 'fused', 'recognize' or 'silence').
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from face3d.animation.animation import Animation
from face3d.animation.lipsync.coarticulation import blinks, closure_strength, loudness, viseme_activations
from face3d.animation.lipsync.phonemes import RATE, PhoneTrack
from face3d.animation.lipsync.phonemes import phonemes as timed_phonemes
from face3d.animation.lipsync.timing import VisemeTrack, timed_visemes, visemes_from_phones
from face3d.animation.lipsync.visemes import VISEME_TO_ARKIT
from face3d.arkit import ARKIT_INDEX
from face3d.errors import BadInputError

__all__ = ["animate_audio", "animate_phonemes", "animate_visemes", "timed_phonemes", "timed_visemes"]

_JAW = ARKIT_INDEX["jawOpen"]
_CLOSE = ARKIT_INDEX["mouthClose"]
_PRESS = [ARKIT_INDEX["mouthPressLeft"], ARKIT_INDEX["mouthPressRight"]]
CLOSURE_JAW = 0.5  # share of jawOpen removed at a full lip closure
CLOSURE_PRESS = 0.45  # mouthPress at a full lip closure (the PP pose's)
CLOSURE_FULL = 0.75  # closure_strength from which the lips are fully shut (the frame nearest a 10 ms p/b/m at 30 fps: >= 0.79)


def animate_phonemes(track: PhoneTrack, audio: np.ndarray | None = None, fps: float = 30.0, blink: bool = True,
                     seed: int = 0, jaw_gain: float = 0.6) -> Animation:
    """Animation from timed phones (and the 16 kHz mono audio they came from, for loudness)."""
    return animate_visemes(visemes_from_phones(track), audio, fps, blink, seed, jaw_gain)


def animate_visemes(track: VisemeTrack, audio: np.ndarray | None = None, fps: float = 30.0, blink: bool = True,
                    seed: int = 0, jaw_gain: float = 0.6) -> Animation:
    """Animation from timed visemes (and the 16 kHz mono audio they came from, for loudness)."""
    check_lipsync_args(fps, None)
    n = max(int(np.ceil(track.duration * fps)), 1)
    segs = track.segments
    act = viseme_activations([s.viseme for s in segs], np.array([s.start for s in segs]),
                             np.array([s.end for s in segs]), n, fps)
    w = act @ VISEME_TO_ARKIT
    if audio is not None:
        loud = loudness(audio, RATE, n, fps)
        w[:, _JAW] *= (1.0 - jaw_gain) + 2.0 * jaw_gain * loud
    # a p/b/m must shut the lips on screen even when shorter than a frame: mouthClose meets jawOpen
    k = closure_strength([s.viseme for s in segs], np.array([s.start for s in segs]), np.array([s.end for s in segs]), n, fps)
    k = np.minimum(k / CLOSURE_FULL, 1.0)
    w[:, _JAW] *= 1.0 - CLOSURE_JAW * k
    w[:, _CLOSE] = np.maximum(w[:, _CLOSE], k * w[:, _JAW])
    w[:, _PRESS] = np.maximum(w[:, _PRESS], CLOSURE_PRESS * k[:, None])
    w[:, _CLOSE] = np.minimum(w[:, _CLOSE], w[:, _JAW])
    if blink:
        b = blinks(n, fps, seed=seed)
        w[:, ARKIT_INDEX["eyeBlinkLeft"]] = b
        w[:, ARKIT_INDEX["eyeBlinkRight"]] = b
    phones = track.phones.segments if track.phones is not None else []
    meta = {"viseme_segments": [[s.viseme, round(s.start, 4), round(s.end, 4)] for s in segs],
            "phonemes": [[s.phone, round(s.start, 4), round(s.end, 4)] for s in phones], "phoneme_method": track.method}
    return Animation(fps=fps, arkit=np.clip(w, 0.0, 1.0), visemes=act, meta=meta)


def animate_audio(path: str | Path | tuple[np.ndarray, int], text: str | None = None, fps: float = 30.0, blink: bool = True,
                  seed: int = 0, recognizer: str = "words") -> Animation:
    """Lip-sync animation (ARKit weights at ``fps``) for the speech in ``path`` (any WAV/FLAC/OGG/MP3
    file, or in-memory ``(samples, rate)``: samples (N,) or (N, channels), rate in Hz).

    ``text``: the transcript, for forced alignment; without it the visemes are recognised by
    ``recognizer`` ('words', the default, 'fused', 'classifier' or 'pocketsphinx', see :mod:`face3d.animation.lipsync.timing`).
    When the transcript is empty, too long for the audio, or cannot be aligned, the result's
    ``meta['notes']`` says so (and which recogniser was used instead).
    """
    from face3d.io.audio import audio_samples, load_audio

    check_lipsync_args(fps, text)
    if isinstance(path, tuple) and len(path) == 2:
        audio, source = audio_samples(path[0], path[1], RATE), None
    elif isinstance(path, (str, Path)) and str(path):
        audio, source = load_audio(path, RATE), str(path)
    else:
        raise BadInputError(f"animate_audio: expected an audio file path or (samples, rate), got {type(path).__name__}")
    track = timed_visemes(audio, text, recognizer)
    anim = animate_visemes(track, audio, fps=fps, blink=blink, seed=seed)
    anim.meta["notes"] = list(track.notes)
    anim.audio = source
    return anim


MAX_FPS = 240.0  # animation frames per second; 100000 fps took 4.7 GB


def check_lipsync_args(fps: object, text: object) -> None:
    """BadInputError for an fps outside (0, MAX_FPS] or a transcript that is not text."""
    from face3d.fitting.stages import check_setting

    check_setting("argument 'fps'", fps, ("positive", 0.0, MAX_FPS))
    if text is not None and not isinstance(text, str):
        raise BadInputError(f"argument 'text': expected the transcript as a string, got {type(text).__name__}")
