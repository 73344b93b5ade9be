"""Ground-truth speech for lip-sync checks: espeak-ng synthesis with each phoneme's audio position.

espeak-ng is driven through its C library (``libespeak-ng.so.1``, Debian ``libespeak-ng1``)
with ctypes, in synchronous mode with phoneme events enabled
(``espeakINITIALIZE_PHONEME_EVENTS``): the synthesis callback receives both the samples and
``espeakEVENT_PHONEME`` events whose ``audio_position`` (ms) is where that phoneme starts in
the returned audio. This is preferred to parsing ``espeak-ng -x``/``--pho`` text because the
positions come from the same synthesis run as the samples (no second run, no duration sums).
A phoneme lasts until the next phoneme event (or the end of the audio).
"""

from __future__ import annotations

import ctypes
import threading
from dataclasses import dataclass

import numpy as np

from face3d.errors import BadInputError, MissingDependencyError

_EVENT_LIST_TERMINATED, _EVENT_PHONEME = 0, 7
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_PHONEME_EVENTS = 0x0001
RHOTIC = ("A@", "e@", "O@", "o@", "i@", "U@", "aI@", "aU@")
_lock = threading.Lock()
_state: dict[str, object] = {}


class _Id(ctypes.Union):
    _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8)]


class _Event(ctypes.Structure):
    _fields_ = [("type", ctypes.c_int), ("unique_identifier", ctypes.c_uint), ("text_position", ctypes.c_int),
                ("length", ctypes.c_int), ("audio_position", ctypes.c_int), ("sample", ctypes.c_int),
                ("user_data", ctypes.c_void_p), ("id", _Id)]


_Callback = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event))


@dataclass
class SpokenPhonemes:
    """espeak-ng output: ``audio`` float32 (N,) at ``rate`` Hz; phonemes (P,) mnemonics with
    ``starts`` (P,) seconds; each lasts until the next start (the last until the end of the audio)."""

    audio: np.ndarray
    rate: int
    phonemes: list[str]
    starts: np.ndarray

    @property
    def duration(self) -> float:
        return self.audio.shape[0] / float(self.rate)

    def ends(self) -> np.ndarray:
        return np.append(self.starts[1:], self.duration)

    def viseme_segments(self) -> tuple[list[str], np.ndarray, np.ndarray]:
        """Viseme labels with start/end times (s) of the phonemes. espeak-ng's en-US rhotic vowels
        (``RHOTIC``: 'car', 'air', 'or', 'ear', 'poor') are one phoneme for vowel + r; they are split in
        two halves, the vowel's viseme then RR, as a dictionary's vowel + R would be."""
        from face3d.animation.lipsync.visemes import espeak_viseme

        labels, starts, ends = [], [], []
        for p, a, b in zip(self.phonemes, self.starts, self.ends()):
            if p.rstrip("0123456789") in RHOTIC and b > a:
                m = 0.5 * (a + b)
                labels += [espeak_viseme(p), "RR"]
                starts += [a, m]
                ends += [m, b]
            else:
                labels.append(espeak_viseme(p))
                starts.append(a)
                ends.append(b)
        return labels, np.array(starts), np.array(ends)


def _library():
    if "lib" not in _state:
        try:
            lib = ctypes.CDLL("libespeak-ng.so.1")
        except OSError:
            raise MissingDependencyError("libespeak-ng1 (Debian package)", purpose="espeak-ng ground-truth speech") from None
        rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 200, None, _INITIALIZE_PHONEME_EVENTS)
        if rate <= 0:
            raise MissingDependencyError("espeak-ng-data (Debian package)", purpose="espeak-ng ground-truth speech")
        sink: dict[str, list] = {"samples": [], "events": []}

        def on_synth(wav, n, events):  # called from espeak_Synth in this thread
            if wav and n > 0:
                sink["samples"].append(np.ctypeslib.as_array(wav, (n,)).copy())
            i = 0
            while events[i].type != _EVENT_LIST_TERMINATED:
                if events[i].type == _EVENT_PHONEME:
                    sink["events"].append((events[i].audio_position, events[i].id.string.decode("ascii", "replace")))
                i += 1
            return 0

        cb = _Callback(on_synth)
        lib.espeak_SetSynthCallback(cb)
        _state.update(lib=lib, rate=rate, cb=cb, sink=sink, voice=None)
    return _state


def synthesize(text: str, voice: str = "en-us", rate_wpm: int = 175, pitch: int = 50) -> SpokenPhonemes:
    """Speak ``text`` with espeak-ng; returns the audio and each phoneme's start time (s).

    ``voice``: an espeak-ng voice name, optionally with a variant ('en-us+f3'); ``rate_wpm``: words
    per minute; ``pitch``: espeak-ng's base pitch parameter, 0–100 (50 is its default)."""
    if not text or not text.strip():
        raise BadInputError("synthesize: text is empty")
    with _lock:
        st = _library()
        lib = st["lib"]
        if st["voice"] != (voice, rate_wpm, pitch):
            if lib.espeak_SetVoiceByName(voice.encode()) != 0:
                raise BadInputError(f"synthesize: espeak-ng has no voice '{voice}'")
            lib.espeak_SetParameter(1, int(rate_wpm), 0)  # espeakRATE, absolute
            lib.espeak_SetParameter(3, int(pitch), 0)  # espeakPITCH, absolute
            st["voice"] = (voice, rate_wpm, pitch)
        sink = st["sink"]
        sink["samples"].clear()
        sink["events"].clear()
        data = text.encode("utf-8") + b"\0"
        lib.espeak_Synth(data, len(data), 0, 0, 0, 0, None, None)
        lib.espeak_Synchronize()
        samples = np.concatenate(sink["samples"]) if sink["samples"] else np.zeros(0, np.int16)
        events = list(sink["events"])
    audio = samples.astype(np.float32) / 32768.0
    rate = int(st["rate"])
    dur = audio.shape[0] / rate
    phon = [(min(pos / 1000.0, dur), name) for pos, name in events]
    phon.sort(key=lambda e: e[0])
    starts = np.array([p for p, _ in phon], np.float64)
    return SpokenPhonemes(audio, rate, [n for _, n in phon], starts)
