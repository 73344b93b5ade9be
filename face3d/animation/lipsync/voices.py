"""Speech of many synthetic voices with reference viseme timings: lip-sync training and judging.

``speak(text, voice)`` returns a :class:`ReferenceSpeech` (16 kHz mono audio and the timed
visemes it should produce). A voice is ``'<engine>:<name>'``:

* ``espeak:<variant>`` — espeak-ng's en-US voice with a variant (``espeak:`` is the default
  voice, ``espeak:f3`` ...); exact phoneme positions from its C library (:mod:`espeak`).
* ``flite:<voice>`` — Flite (Debian ``flite``: ``kal``, ``kal16``, ``awb``, ``rms``, ``slt``),
  voices built from real speakers' recordings; exact segment end times from ``flite -psdur``.
* ``festival:<voice>`` — Festival (Debian ``festival``, ``festvox-kallpc16k``, ``festvox-kdlpc16k``,
  ``festvox-us-slt-hts``: ``kal_diphone``, ``ked_diphone``, ``cmu_us_slt_arctic_hts``); exact
  segment end times from the utterance's Segment relation. **Held out: never train or tune on it.**
* ``pico:<lang>`` — SVOX Pico (Debian non-free ``libttspico-utils``: ``en-US``, ``en-GB``); it
  reports no timings, so the reference is pocketsphinx's forced alignment of the known text
  (:func:`phonemes.align`) on the clean audio: an estimate, measured against exact timings in
  ``benchmarks/lipsync_voices.py`` (``--check-align``).

Flite's and Festival's US voices use the CMU "radio" phone set (ARPAbet in lower case plus
``pau``, ``ax``, ``axr``, ``el``, ``em``, ``en``, ``dx``); :func:`radio_viseme` maps it.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from face3d.animation.lipsync.features import RATE
from face3d.animation.lipsync.visemes import cmu_viseme
from face3d.errors import BadInputError, MissingDependencyError

_RADIO = {"pau": "SIL", "h#": "SIL", "brth": "SIL", "ax": "AH", "axr": "ER", "el": "L", "em": "M", "en": "N", "dx": "D",
          "nx": "N", "hv": "HH"}
ENGINES = ("espeak", "flite", "festival", "pico")
_BINARIES = {"flite": ("flite", "flite"), "festival": ("festival", "festival"), "pico": ("pico2wave", "libttspico-utils")}


@dataclass(frozen=True)
class ReferenceSpeech:
    """``audio`` float32 (N,) at 16 kHz; ``visemes`` (S,) names with ``starts``/``ends`` (S,) in seconds
    covering the audio; ``voice`` as given to :func:`speak`; ``exact``: timings from the synthesiser
    (False: from forced alignment)."""

    audio: np.ndarray
    visemes: tuple[str, ...]
    starts: np.ndarray
    ends: np.ndarray
    voice: str
    exact: bool

    @property
    def duration(self) -> float:
        return self.audio.shape[0] / RATE


def radio_viseme(phone: str) -> str:
    """Viseme of a CMU radio-set phone (Flite/Festival US voices: 'pau', 'ax', 'p', ...)."""
    p = phone.strip().lower()
    return cmu_viseme(_RADIO.get(p, p))


def _binary(engine: str) -> str:
    exe, package = _BINARIES[engine]
    path = shutil.which(exe)
    if path is None:
        raise MissingDependencyError(f"{package} (Debian package)", purpose=f"{engine} speech for lip-sync training/benchmarks")
    return path


def _read_wav(path: Path) -> np.ndarray:
    from face3d.io.audio import load_audio

    return load_audio(path, RATE).astype(np.float32)


def _from_ends(audio: np.ndarray, phones: list[tuple[str, float]], voice: str) -> ReferenceSpeech:
    """Segments given by (phone, end s) in order, the first starting at 0."""
    dur = audio.shape[0] / RATE
    labels, starts, ends, t = [], [], [], 0.0
    for phone, end in phones:
        end = min(end, dur)
        if end > t:
            labels.append(radio_viseme(phone))
            starts.append(t)
            ends.append(end)
            t = end
    if t < dur:
        labels.append("sil")
        starts.append(t)
        ends.append(dur)
    return ReferenceSpeech(audio, tuple(labels), np.array(starts), np.array(ends), voice, True)


def _parse_ends(text: str) -> list[tuple[str, float]]:
    out = []
    for tok in text.split():
        name, _, end = tok.rpartition(":")
        try:
            out.append((name, float(end)))
        except ValueError:
            continue
    return out


def _flite(text: str, name: str, voice: str, stretch: float = 1.0) -> ReferenceSpeech:
    with tempfile.TemporaryDirectory() as d:
        wav = Path(d) / "s.wav"
        res = subprocess.run([_binary("flite"), "-voice", name, "--setf", f"duration_stretch={stretch:.3f}", "-psdur", "-t", text,
                              "-o", str(wav)],
                             capture_output=True, text=True, timeout=120)
        if res.returncode != 0 or not wav.exists():
            raise BadInputError(f"speak: flite failed for voice '{name}': {res.stderr.strip()[:200]}")
        return _from_ends(_read_wav(wav), _parse_ends(res.stdout), voice)


def _festival(text: str, name: str, voice: str) -> ReferenceSpeech:
    quoted = text.replace("\\", " ").replace('"', " ")
    with tempfile.TemporaryDirectory() as d:
        wav = Path(d) / "s.wav"
        script = Path(d) / "s.scm"
        script.write_text(f'(voice_{name})\n(set! utt (utt.synth (Utterance Text "{quoted}")))\n'
                          f'(utt.save.wave utt "{wav}" \'riff)\n'
                          '(mapcar (lambda (s) (format t "%s:%f\\n" (item.name s) (item.feat s "end"))) '
                          "(utt.relation.items utt 'Segment))\n")
        res = subprocess.run([_binary("festival"), "-b", str(script)], capture_output=True, text=True, timeout=300)
        if res.returncode != 0 or not wav.exists():
            raise BadInputError(f"speak: festival failed for voice '{name}': {(res.stderr or res.stdout).strip()[:200]}")
        return _from_ends(_read_wav(wav), _parse_ends(res.stdout), voice)


def _pico(text: str, lang: str, voice: str) -> ReferenceSpeech:
    from face3d.animation.lipsync.phonemes import align

    with tempfile.TemporaryDirectory() as d:
        wav = Path(d) / "s.wav"
        res = subprocess.run([_binary("pico"), "-l", lang, "-w", str(wav), text], capture_output=True, text=True, timeout=120)
        if res.returncode != 0 or not wav.exists():
            raise BadInputError(f"speak: pico2wave failed for language '{lang}': {res.stderr.strip()[:200]}")
        audio = _read_wav(wav)
    track = align(audio, text)
    if track is None:
        raise BadInputError(f"speak: could not force-align pico speech of '{text[:60]}'")
    segs = track.segments
    return ReferenceSpeech(audio, tuple(cmu_viseme(s.phone) for s in segs), np.array([s.start for s in segs]),
                           np.array([s.end for s in segs]), voice, False)


def _espeak(text: str, variant: str, voice: str, rate_wpm: int = 175, pitch: int = 50) -> ReferenceSpeech:
    from face3d.animation.lipsync.espeak import synthesize
    from face3d.io.audio import _resample

    sp = synthesize(text, voice="en-us" + (f"+{variant}" if variant else ""), rate_wpm=rate_wpm, pitch=pitch)
    labels, starts, ends = sp.viseme_segments()
    audio = _resample(sp.audio, sp.rate, RATE).astype(np.float32)
    return ReferenceSpeech(audio, tuple(labels), np.asarray(starts), np.asarray(ends), voice, True)


def speak(text: str, voice: str) -> ReferenceSpeech:
    """Speech of ``text`` by ``voice`` ('engine:name', see the module docstring) with its reference visemes."""
    engine, sep, name = voice.partition(":")
    if not sep or engine not in ENGINES:
        raise BadInputError(f"speak: voice must be '<engine>:<name>' with engine one of {ENGINES}, got '{voice}'")
    if not text.strip():
        raise BadInputError("speak: text is empty")
    if engine == "espeak":
        return _espeak(text, name, voice)
    if engine == "flite":
        return _flite(text, name, voice)
    if engine == "festival":
        return _festival(text, name, voice)
    return _pico(text, name, voice)


def frames(speech: ReferenceSpeech, fps: float = 100.0) -> np.ndarray:
    """(T,) reference viseme indices at ``fps`` (``evaluate.viseme_frames``), T = round(duration × fps)."""
    from face3d.animation.lipsync.evaluate import viseme_frames

    return viseme_frames(list(speech.visemes), speech.starts, speech.ends, speech.duration, fps)
