"""Timed phonemes from speech with pocketsphinx (CMU en-US acoustic model bundled in its wheel).

Three modes, all at pocketsphinx's 100 frames/s:
* forced alignment when the transcript is known: a word-level FSG alignment (fillers allowed
  between words, so pauses become silence), then a state-level sub-word alignment giving each
  phone's start and duration. If the sub-word pass fails, phones get the word's time split in
  proportion to typical phone durations; if the transcript cannot be aligned at all, the
  recogniser below is used instead (noted in the result's ``method``).
* phone recognition otherwise: pocketsphinx's all-phone search with the bundled phone
  language model (en-us-phone.lm.bin), run on chunks of at most ``CHUNK_SECONDS``;
* word recognition (:func:`recognize_words`): the bundled trigram word language model, then the
  forced alignment of the recognised words, chunk by chunk.
Words missing from the CMU dictionary are added with a letter-to-sound fallback (one phone
per letter group) so alignment never fails on spelling.
"""

from __future__ import annotations

import os
import re
import threading
from dataclasses import dataclass

import numpy as np

from face3d.errors import BadInputError, MissingDependencyError

RATE = 16000
FRAME = 0.01  # seconds per pocketsphinx frame
# A frame's features come from a 25.6 ms window starting at the frame time: its centre, and so
# the phone boundary it marks, lies one frame later (measured on espeak-ng speech: +10 ms best).
OFFSET = 0.01
MERGE_PAUSE = 0.1  # interior silences shorter than this (stop closures) go to their neighbours
CHUNK_SECONDS = 30.0
ALIGN_MAX_SECONDS = 120.0
_lock = threading.Lock()
_decoders: dict[str, object] = {}
_initial_cmn: dict[str, str] = {}  # each cached decoder's CMN state when new: restored at every call

# Typical phone durations (s), used only to split a word when the sub-word pass fails.
_VOWELS = {"AA", "AE", "AH", "AO", "AW", "AY", "EH", "ER", "EY", "IH", "IY", "OW", "OY", "UH", "UW"}

_LETTERS = {"a": "AE", "b": "B", "c": "K", "d": "D", "e": "EH", "f": "F", "g": "G", "h": "HH", "i": "IH",
            "j": "JH", "k": "K", "l": "L", "m": "M", "n": "N", "o": "AA", "p": "P", "q": "K", "r": "R",
            "s": "S", "t": "T", "u": "AH", "v": "V", "w": "W", "x": "K S", "y": "Y", "z": "Z"}
_DIGRAPHS = {"ch": "CH", "sh": "SH", "th": "TH", "ph": "F", "ng": "NG", "ck": "K", "ee": "IY", "oo": "UW",
             "ou": "AW", "ai": "EY", "ay": "EY", "oa": "OW", "ea": "IY", "qu": "K W", "wh": "W"}
_ONES = "zero one two three four five six seven eight nine".split()


@dataclass
class PhoneSegment:
    """One phone: ARPAbet name ('SIL' for silence/fillers), start and end in seconds."""

    phone: str
    start: float
    end: float


@dataclass
class PhoneTrack:
    """Phones covering [0, duration) in order, and how they were found ('align', 'align-split', 'recognize')."""

    segments: list[PhoneSegment]
    duration: float
    method: str


def _ps():
    try:
        import pocketsphinx
    except ImportError:
        raise MissingDependencyError("pocketsphinx", "audio", "lip sync from audio") from None
    return pocketsphinx


def _decoder(kind: str):
    if kind not in _decoders:
        ps = _ps()
        mp = ps.get_model_path()
        common = dict(hmm=os.path.join(mp, "en-us", "en-us"), samprate=RATE, loglevel="FATAL")
        if kind == "align":
            d = ps.Decoder(lm=None, dict=os.path.join(mp, "en-us", "cmudict-en-us.dict"), bestpath=False,
                           beam=1e-80, pbeam=1e-80, wbeam=1e-60, **common)
        elif kind == "align-nofiller":
            d = ps.Decoder(lm=None, dict=os.path.join(mp, "en-us", "cmudict-en-us.dict"), bestpath=False,
                           fsgusefiller=False, **common)
        elif kind == "words":
            d = words_decoder()
        else:
            d = allphone_decoder()
        _decoders[kind] = d
        _initial_cmn[kind] = d.get_cmn()
    return _decoders[kind]


def _reset(d, kind: str) -> None:
    """Put a cached decoder's front end back in its state when new: a fresh feature computation
    (spectral noise-subtraction estimate, CMN, AGC) and the initial cepstral mean, so that what it
    decodes next does not depend on what it decoded before."""
    d.reinit_feat()
    d.set_cmn(_initial_cmn[kind])


def allphone_decoder(lw: float = 0.25, wip: float = 1.0):
    """A new pocketsphinx all-phone decoder (bundled en-US model and phone language model).

    Defaults chosen on 20 espeak-ng Harvard sentences disjoint from benchmarks/animation.py's
    (``python benchmarks/lipsync_dev.py``): lw 2 → 0.25 raised frame viseme accuracy 0.450 → 0.503,
    and the front end below (no spectral noise subtraction, live CMN) 0.503 → 0.524, measured with
    the CMN carried over between sentences (:func:`recognize` now warms it per recording). The model's
    feat.params override constructor options, so the front end is re-set after construction.
    """
    ps = _ps()
    mp = ps.get_model_path()
    d = ps.Decoder(hmm=os.path.join(mp, "en-us", "en-us"), samprate=RATE, loglevel="FATAL",
                   allphone=os.path.join(mp, "en-us", "en-us-phone.lm.bin"), lw=lw, wip=wip, beam=1e-20, pbeam=1e-20)
    d.config["remove_noise"] = False
    d.config["cmn"] = "live"
    d.reinit_feat()
    return d


WORDS_SEARCH = {"fwdflat": False, "bestpath": False, "maxhmmpf": 500, "topn": 2}
"""pocketsphinx options of the word recogniser (:func:`recognize_words`): one forward pass (no
flat-lexicon rescoring, no lattice best path), at most 500 active HMMs a frame, the 2 best Gaussians.
Chosen on the development voices (``train.DEV_VOICES``, 72 clips) to keep the whole 'words' call at
the CPU cost of the 'fused' one (real-time factor <= 0.1) at the least loss of accuracy. CPU seconds of
the word search alone per audio second (load average 3-4) / frame accuracy of the 'words' track:
maxhmmpf 2000: 0.086 / 0.810, 1000: 0.070 / 0.810, 700: 0.062 / 0.808, 400: 0.050 / 0.795; 1000 with
2x frame downsampling (``ds``): 0.060 / 0.782; pocketsphinx's defaults (two more passes, all
Gaussians): 0.18 (24 clips). 700 → 500: whole call 1.05 → 1.01 times 'fused''s CPU time, 0.808 → 0.800."""


def words_decoder():
    """A new pocketsphinx word decoder: bundled en-US acoustic model, trigram language model and
    CMU dictionary, :data:`WORDS_SEARCH`, cepstral mean over the whole utterance (``cmn`` 'batch':
    one pass, and the result depends on this audio only)."""
    ps = _ps()
    mp = ps.get_model_path()
    d = ps.Decoder(hmm=os.path.join(mp, "en-us", "en-us"), samprate=RATE, loglevel="FATAL", **WORDS_SEARCH)
    d.config["cmn"] = "batch"
    d.reinit_feat()
    return d


def normalize_transcript(text: str) -> list[str]:
    """Lower-case words of ``text`` (letters and apostrophes; digits spelled out one by one)."""
    text = re.sub(r"\d", lambda m: f" {_ONES[int(m.group())]} ", text.lower())
    return re.findall(r"[a-z]+(?:'[a-z]+)*", text)


def letter_to_sound(word: str) -> str:
    """Crude ARPAbet spelling of an out-of-dictionary word (digraphs, then single letters)."""
    out, i = [], 0
    while i < len(word):
        two = word[i : i + 2]
        if two in _DIGRAPHS:
            out.append(_DIGRAPHS[two])
            i += 2
            continue
        if word[i] in _LETTERS and not (word[i] == "e" and i == len(word) - 1 and i > 0):
            out.append(_LETTERS[word[i]])
        i += 1
    return " ".join(out) or "AH"


def _pcm(audio: np.ndarray) -> bytes:
    """16-bit PCM with a deterministic ±1 LSB dither: stretches of exact digital silence (zeros)
    otherwise give pocketsphinx -inf log energies that break forced alignment of longer audio
    (measured: espeak-ng sentences joined by 0.3 s of zeros fail to align beyond ~20 s)."""
    pcm = np.round(np.clip(audio, -1.0, 1.0) * 32766.0).astype(np.int32)
    pcm += np.random.default_rng(0).integers(-1, 2, size=pcm.shape, dtype=np.int32)
    return pcm.astype("<i2").tobytes()


def _decode(d, pcm: bytes) -> None:
    d.start_utt()
    d.process_raw(pcm, full_utt=True)
    d.end_utt()


def _base(phone: str) -> str:
    p = phone.upper()
    return "SIL" if (p.startswith("+") or p.startswith("<") or p.startswith("[") or p in ("SIL", "")) else p.rstrip("012")


def _fill(segs: list[PhoneSegment], duration: float) -> list[PhoneSegment]:
    """Shift by OFFSET, sort, clip to [0, duration], cover gaps with SIL and give short interior
    silences (stop closures, < MERGE_PAUSE) half to the phone before and half to the one after."""
    out: list[PhoneSegment] = []
    t = 0.0
    segs = [PhoneSegment(s.phone, s.start + OFFSET, s.end + OFFSET) for s in segs]
    for s in sorted(segs, key=lambda s: s.start):
        start, end = max(s.start, t), min(s.end, duration)
        if end <= start:
            continue
        if start > t + 1e-9:
            out.append(PhoneSegment("SIL", t, start))
        if out and out[-1].phone == s.phone == "SIL":
            out[-1].end = end
        else:
            out.append(PhoneSegment(s.phone, start, end))
        t = end
    if t < duration - 1e-9:
        out.append(PhoneSegment("SIL", t, duration))
    for i in range(1, len(out) - 1):
        s = out[i]
        if s.phone == "SIL" and s.end - s.start < MERGE_PAUSE and out[i - 1].phone != "SIL" and out[i + 1].phone != "SIL":
            mid = 0.5 * (s.start + s.end)
            out[i - 1].end = mid
            out[i + 1].start = mid
            s.start = s.end = mid
    return [s for s in out if s.end > s.start]


def _word_phones(d, word: str) -> list[str]:
    w = re.sub(r"\(\d+\)$", "", word)
    pron = d.lookup_word(w)
    return pron.split() if pron else []


def align(audio: np.ndarray, text: str) -> PhoneTrack | None:
    """Forced alignment of ``text`` to mono 16 kHz ``audio``; None if pocketsphinx cannot align it."""
    words = normalize_transcript(text)
    duration = audio.shape[0] / RATE
    if not words:
        return None
    pcm = _pcm(audio)
    with _lock:
        for kind in ("align", "align-nofiller"):
            d = _decoder(kind)
            _reset(d, kind)  # the segments depend only on this audio and text (issue 21)
            for w in sorted(set(words)):
                if d.lookup_word(w) is None:
                    d.add_word(w, letter_to_sound(w), True)
            try:
                d.set_align_text(" ".join(words))
                _decode(d, pcm)
                wsegs = [(s.word, s.start_frame * FRAME, (s.end_frame + 1) * FRAME) for s in (d.seg() or [])]
            except RuntimeError:
                wsegs = []
            if not wsegs:
                continue
            try:
                d.set_alignment()
                _decode(d, pcm)
                al = d.get_alignment()
                segs = [PhoneSegment(_base(p.name), p.start * FRAME, (p.start + p.duration) * FRAME) for w in al for p in w]
                if segs:
                    return PhoneTrack(_fill(segs, duration), duration, "align")
            except RuntimeError:
                pass
            return PhoneTrack(_fill(_split_words(d, wsegs), duration), duration, "align-split")
    return None


def _split_words(d, wsegs: list[tuple[str, float, float]]) -> list[PhoneSegment]:
    """Phones of timed words (word, start s, end s), each word's time split in proportion to
    typical phone durations (vowels twice a consonant); fillers become 'SIL'."""
    segs = []
    for word, t0, t1 in wsegs:
        phones = ["SIL"] if word.startswith("<") or word.startswith("[") else [_base(p) for p in _word_phones(d, word)]
        phones = phones or ["SIL"]
        wts = np.array([2.0 if p in _VOWELS else 1.0 for p in phones])
        edges = t0 + (t1 - t0) * np.concatenate([[0.0], np.cumsum(wts) / wts.sum()])
        segs += [PhoneSegment(p, float(a), float(b)) for p, a, b in zip(phones, edges[:-1], edges[1:])]
    return segs


def _decode_phones(decoder, audio: np.ndarray, offset: float = 0.0) -> list[PhoneSegment]:
    """Run a pocketsphinx all-phone ``decoder`` on mono 16 kHz ``audio`` (N,) → its phone
    segments (not yet filled/merged), times shifted by ``offset`` seconds."""
    _decode(decoder, _pcm(audio))
    return [PhoneSegment(_base(s.word), offset + s.start_frame * FRAME, offset + (s.end_frame + 1) * FRAME)
            for s in decoder.seg() or []]


def recognize(audio: np.ndarray) -> PhoneTrack:
    """Phone recognition (no transcript) on mono 16 kHz ``audio``, chunk by chunk.

    The decoder's live CMN is reset, then warmed by a first pass over the first chunk, so the
    result depends on this audio only (development set 0.513; the 0.524 measured when the front
    end was chosen came from a CMN carried over from the previous sentence)."""
    duration = audio.shape[0] / RATE
    step = int(CHUNK_SECONDS * RATE)
    segs: list[PhoneSegment] = []
    with _lock:
        d = _decoder("allphone")
        _reset(d, "allphone")  # the same audio gives the same phones whatever was decoded before
        _decode(d, _pcm(audio[:step]))  # a first pass adapts the live CMN to this recording (dev set 0.444 -> 0.513)
        for c0 in range(0, audio.shape[0], step):
            chunk = audio[c0 : c0 + step]
            if chunk.shape[0] < RATE // 20:
                continue
            segs += _decode_phones(d, chunk, c0 / RATE)
    return PhoneTrack(_fill(segs, duration), duration, "recognize")


def recognize_words(audio: np.ndarray) -> tuple[PhoneTrack, list[str]]:
    """Word recognition (no transcript) on mono 16 kHz ``audio``, chunk by chunk: pocketsphinx's
    word search with its trigram language model (:func:`words_decoder`), then the forced alignment
    of the recognised words (:func:`align`; their time split by typical phone durations where that
    fails). Returns the phones (``method`` 'words') and the recognised words. On speech that the
    acoustic model fits (human speech, voices built from recordings) the words are mostly right,
    and wrong words still mostly have the right mouth shapes; on voices it does not fit (espeak-ng)
    they are wrong: :func:`face3d.animation.lipsync.timing.words_track` checks them against the audio."""
    duration = audio.shape[0] / RATE
    step = int(CHUNK_SECONDS * RATE)
    segs: list[PhoneSegment] = []
    words: list[str] = []
    for c0 in range(0, audio.shape[0], step):
        chunk = audio[c0 : c0 + step]
        t0, length = c0 / RATE, chunk.shape[0] / RATE
        part = None
        if chunk.shape[0] >= RATE // 20:
            with _lock:
                d = _decoder("words")
                _reset(d, "words")  # cmn 'batch': the words depend on this chunk only
                _decode(d, _pcm(chunk))
                wsegs = [(s.word, s.start_frame * FRAME, (s.end_frame + 1) * FRAME) for s in (d.seg() or [])]
                split = _split_words(d, wsegs)
            spoken = [re.sub(r"\(\d+\)$", "", w) for w, _, _ in wsegs if not (w.startswith("<") or w.startswith("["))]
            if spoken:
                words += spoken
                part = align(chunk, " ".join(spoken)) or PhoneTrack(_fill(split, length), length, "split")
        part_segs = part.segments if part is not None else [PhoneSegment("SIL", 0.0, length)]
        segs += [PhoneSegment(s.phone, t0 + s.start, t0 + s.end) for s in part_segs]
    return PhoneTrack(segs, duration, "words"), words


def phonemes(audio: np.ndarray, text: str | None = None) -> PhoneTrack:
    """Timed phones of mono 16 kHz float ``audio`` (N,): aligned to ``text`` when given, else recognised."""
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim != 1:
        raise BadInputError(f"phonemes: audio must be mono (N,), got shape {audio.shape}")
    duration = audio.shape[0] / RATE
    if duration < 0.05 or float(np.abs(audio).max(initial=0.0)) < 1e-4:
        return PhoneTrack([PhoneSegment("SIL", 0.0, duration)] if duration > 0 else [], duration, "silence")
    if text is not None and text.strip() and duration <= ALIGN_MAX_SECONDS:
        track = align(audio, text)
        if track is not None:
            return track
    return recognize(audio)
