"""Timed visemes of speech: the lip-sync track that drives the animation.

``timed_visemes(audio, text=None, recognizer='words')`` chooses the source:

* with a transcript, pocketsphinx's forced alignment (:func:`phonemes.align`), each phone
  mapped to its viseme (``method`` 'align' or 'align-split');
* without one, ``recognizer='words'`` (the default since issue 21's third round, :func:`words_track`)
  recognises words with pocketsphinx's trigram language model and aligns them to the audio
  (:func:`phonemes.recognize_words`); the phone-reading classifier reads the audio and their
  phones, each frame's aligned viseme gets ``WORDS_WEIGHT`` and the lip closure
  ``WORDS_CLOSURE_BONUS``, then the Viterbi pass (``method`` 'words'). Where the words' visemes
  disagree with what the classifier hears (``WORDS_MIN_AGREEMENT``; espeak-ng's voice is heard as
  wrong words) the log-mel classifier's visemes are used instead, with a note (``method``
  'classify' when that is everywhere). On synthetic voices built from real speakers that nothing
  here was trained or tuned on it reads about 0.8 of the frames (benchmarks/README.md, "Recognised words");
* ``recognizer='fused'`` (the default before) runs pocketsphinx's all-phone recognition, then a
  frame-level viseme classifier (:mod:`classifier`) that reads the log-mel frames and the
  recognised phones (trained on espeak-ng, Flite and Pico voices), mixed with the log-mel-only
  classifier trained on espeak-ng when ``MEL_NET_SHARE`` > 0; adds ``FUSION_WEIGHT`` to the
  log-probability of the recognised phone's viseme and ``CLOSURE_BONUS`` to the lip closure's, then
  runs the Viterbi pass (``method`` 'fused': 0.73 of frames on those voices, 0.905 on espeak-ng);
  ``recognizer='classifier'`` runs the log-mel classifier alone (``method`` 'classify'),
  ``recognizer='pocketsphinx'`` the phone recognition alone (``method`` 'recognize');
* near-silent or < 50 ms audio gives one 'sil' segment (``method`` 'silence').
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from face3d.animation.lipsync.phonemes import RATE, PhoneTrack, align, recognize
from face3d.animation.lipsync.visemes import VISEME_INDEX, cmu_viseme
from face3d.errors import BadInputError

RECOGNIZERS = ("classifier", "pocketsphinx", "fused", "words")
# 'fused' (chosen on train.DEV_VOICES with espeak-ng >= 0.90, benchmarks/lipsync_voices.py --sweep):
FUSION_WEIGHT = 1.0  # log-probability bonus of the viseme of pocketsphinx's phone in each frame
CLOSURE_BONUS = 1.0  # log-probability bonus of the lip closure (p/b/m) viseme
MEL_NET_SHARE = 0.0  # weight of the log-mel classifier (espeak-ng's expert) against the phone-reading one (0: not run)
# 'words' (chosen on train.DEV_VOICES with espeak-ng >= 0.90: benchmarks/lipsync_voices.py --words-sweep, --set dev / control):
WORDS_WEIGHT = 3.0
"""Log-probability bonus of the aligned recognised words' viseme in each frame (the phone-reading net
also reads their phones). Chosen on the development voices (word search with maxhmmpf 700): 1 / 2 / 3 / 4
→ 0.780 / 0.800 / 0.808 / 0.810 of frames (closure bonus 1), espeak-ng 0.940 / 0.935 / 0.929 / 0.924."""
WORDS_CLOSURE_BONUS = 1.0
"""Log-probability bonus of the lip closure (p/b/m) viseme in 'words' tracks. Chosen on the development
voices: closure recall 0.734 → 0.768 for +0.001 of frame accuracy (weight 3)."""
WORDS_MIN_AGREEMENT = 0.45
"""Share of the frames of each ``phonemes.CHUNK_SECONDS`` chunk where the recognised words' visemes
must agree with what the phone-reading net hears without phones, else that chunk takes the log-mel
classifier's visemes. Chosen on the development voices (none of their 72 clips is below 0.45) and
espeak-ng, whose voice pocketsphinx hears as wrong words: 0.4 / 0.45 / 0.5 → 16 / 20 / 22 of its 24
clips rejected, espeak-ng 0.904 / 0.929 / 0.942, development voices 0.808 / 0.808 / 0.775."""
CHUNK_SECONDS = 30.0  # the classifier runs on chunks this long (CMVN per chunk), with MARGIN of context each side
MARGIN_SECONDS = 0.5


@dataclass
class VisemeSegment:
    """One viseme (a name of ``visemes.VISEMES``) from ``start`` to ``end`` seconds."""

    viseme: str
    start: float
    end: float


@dataclass
class VisemeTrack:
    """Viseme segments covering [0, duration) in order; ``method`` says how they were found,
    ``phones`` holds the timed phones they came from, when they came from phones, and ``notes``
    what the user should know (a transcript that was not used, or does not match the audio)."""

    segments: list[VisemeSegment]
    duration: float
    method: str
    phones: PhoneTrack | None = field(default=None)
    notes: list[str] = field(default_factory=list)


def visemes_from_phones(track: PhoneTrack) -> VisemeTrack:
    """One segment per phone: the phone's viseme over the phone's interval."""
    segs = [VisemeSegment(cmu_viseme(s.phone), s.start, s.end) for s in track.segments]
    return VisemeTrack(segs, track.duration, track.method, track)


def classifier_log_probs(audio: np.ndarray, net=None, phones: np.ndarray | None = None) -> np.ndarray:
    """(T, 15) classifier log-probabilities at 100 fps of mono 16 kHz ``audio``, chunk by chunk (see
    module doc); ``phones``: (T,) ``classifier.PHONES`` indices at 100 fps, for a net that reads them."""
    from face3d.animation.lipsync.classifier import FPS, viseme_log_probs

    step, margin = int(CHUNK_SECONDS * RATE), int(MARGIN_SECONDS * RATE)
    parts = []
    for c0 in range(0, audio.shape[0], step):
        a, b = max(c0 - margin, 0), min(c0 + step + margin, audio.shape[0])
        f0 = round(a / RATE * FPS)
        lp = viseme_log_probs(audio[a:b], net, None if phones is None else phones[f0:])
        skip = int(round((c0 - a) / RATE * FPS))
        keep = int(round(min(step, audio.shape[0] - c0) / RATE * FPS))
        parts.append(lp[skip : skip + keep])
    return np.concatenate(parts) if parts else np.zeros((0, 15), np.float32)


def phone_frames(track: PhoneTrack, n: int, fps: float = 100.0) -> np.ndarray:
    """(n,) viseme indices of a phone track at ``fps`` (frame i: the phone covering (i + 0.5) / fps; gaps 'sil')."""
    from face3d.animation.lipsync.evaluate import viseme_frames

    segs = track.segments
    return viseme_frames([cmu_viseme(s.phone) for s in segs], [s.start for s in segs], [s.end for s in segs], n / fps, fps)


def phone_indices(track: PhoneTrack, n: int, fps: float = 100.0) -> np.ndarray:
    """(n,) ``classifier.PHONES`` indices of a phone track at ``fps`` (frame i: the phone covering
    (i + 0.5) / fps; gaps and unknown phones 'SIL')."""
    from face3d.animation.lipsync.classifier import PHONE_INDEX

    t = (np.arange(n) + 0.5) / fps
    out = np.zeros(n, np.int64)
    for s in track.segments:
        out[(t >= s.start) & (t < s.end)] = PHONE_INDEX.get(s.phone, 0)
    return out


def fuse(log_probs: np.ndarray, prior: np.ndarray, weight: float = FUSION_WEIGHT) -> np.ndarray:
    """(T, 15) ``log_probs`` with ``weight`` added at each frame's ``prior`` (T,) viseme index."""
    out = np.array(log_probs, np.float32, copy=True)
    n = min(out.shape[0], prior.shape[0])
    out[np.arange(n), prior[:n]] += weight
    return out


def classify_audio(audio: np.ndarray, net=None, phones: PhoneTrack | None = None, weight: float = FUSION_WEIGHT) -> VisemeTrack:
    """The classifier's viseme track of mono 16 kHz ``audio`` (``method`` 'classify'; ``net``: the
    log-mel classifier, default ``classifier.default_net()``). With ``phones`` (pocketsphinx's
    recognised phones) the 'fused' track (:func:`fused_log_probs`): ``weight`` is added to the
    log-probability of each frame's phone's viseme (:func:`fuse`) and ``CLOSURE_BONUS`` to the lip
    closure's, before the Viterbi pass."""
    from face3d.animation.lipsync.classifier import segments, viterbi
    from face3d.animation.lipsync.features import n_frames

    duration = audio.shape[0] / RATE
    if phones is None:
        lp = classifier_log_probs(audio, net)
    else:
        n = n_frames(audio.shape[0])
        lp = fuse(fused_log_probs(audio, phones, net), phone_frames(phones, n), weight)
        lp[:, VISEME_INDEX["PP"]] += CLOSURE_BONUS
    segs = segments(viterbi(lp))
    if segs:
        segs[-1].end = max(segs[-1].end, duration)
    return VisemeTrack([VisemeSegment(s.viseme, s.start, min(s.end, duration)) for s in segs if s.start < duration],
                       duration, "classify" if phones is None else "fused")


def fused_log_probs(audio: np.ndarray, phones: PhoneTrack, net=None, phone_net=None) -> np.ndarray:
    """(T, 15) mix of two classifiers' log-probabilities: ``phone_net`` (default
    ``classifier.default_phone_net()``), which reads the audio and pocketsphinx's ``phones``, weighted
    1 - ``MEL_NET_SHARE``, and the log-mel ``net`` (default ``classifier.default_net()``, espeak-ng's
    expert) weighted ``MEL_NET_SHARE``."""
    from face3d.animation.lipsync.classifier import default_phone_net
    from face3d.animation.lipsync.features import n_frames

    n = n_frames(audio.shape[0])
    with_phones = classifier_log_probs(audio, phone_net or default_phone_net(), phone_indices(phones, n))
    if MEL_NET_SHARE == 0.0:
        return with_phones
    return (1.0 - MEL_NET_SHARE) * with_phones + MEL_NET_SHARE * classifier_log_probs(audio, net)


def timed_visemes(audio: np.ndarray, text: str | None = None, recognizer: str = "words") -> VisemeTrack:
    """Timed visemes of mono 16 kHz float ``audio`` (N,) (see the module docstring)."""
    from face3d.animation.lipsync.phonemes import PhoneSegment

    if recognizer not in RECOGNIZERS:
        raise BadInputError(f"lip sync: recognizer must be one of {RECOGNIZERS}, got '{recognizer}'")
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim != 1:
        raise BadInputError(f"lip sync: audio must be mono (N,), got shape {audio.shape}")
    duration = audio.shape[0] / RATE
    if duration < 0.05 or float(np.abs(audio).max(initial=0.0)) < 1e-4:
        track = visemes_from_phones(PhoneTrack([PhoneSegment("SIL", 0.0, duration)] if duration > 0 else [], duration, "silence"))
        if text is not None and text.strip():
            track.notes.append(f"the audio is silent or shorter than 50 ms ({duration:.2f} s): the transcript was not used")
        return track
    notes: list[str] = []
    if text is not None:
        aligned = _aligned(audio, text, recognizer, notes)
        if aligned is not None:
            return aligned
    track = recognise(audio, recognizer)
    track.notes[:0] = notes  # what happened to the transcript first
    return track


def recognise(audio: np.ndarray, recognizer: str = "words") -> VisemeTrack:
    """Timed visemes of mono 16 kHz ``audio`` without a transcript, by ``recognizer`` (module docstring)."""
    if recognizer == "classifier":
        return classify_audio(audio)
    if recognizer == "fused":
        return classify_audio(audio, phones=recognize(audio))
    if recognizer == "words":
        return words_track(audio)
    return visemes_from_phones(recognize(audio))


def words_track(audio: np.ndarray, phone_net=None, net=None) -> VisemeTrack:
    """The 'words' track of mono 16 kHz ``audio``: pocketsphinx's recognised words aligned to the
    audio (:func:`phonemes.recognize_words`); the phone-reading net (``phone_net``, default
    ``classifier.default_phone_net()``) reads the audio and their phones, ``WORDS_WEIGHT`` is added to
    each frame's aligned viseme and ``WORDS_CLOSURE_BONUS`` to the lip closure's, then the Viterbi pass.
    Each ``phonemes.CHUNK_SECONDS`` chunk where the words' visemes agree with what the net hears
    without phones on fewer than ``WORDS_MIN_AGREEMENT`` of the frames takes the log-mel
    classifier's (``net``) log-probabilities instead, with a note. ``method`` 'words', or 'classify'
    when no chunk kept its words."""
    from face3d.animation.lipsync import phonemes
    from face3d.animation.lipsync.classifier import FPS, default_phone_net, segments, viterbi
    from face3d.animation.lipsync.features import n_frames

    duration = audio.shape[0] / RATE
    n = n_frames(audio.shape[0])
    phone_net = phone_net or default_phone_net()
    track, words = phonemes.recognize_words(audio)
    prior = phone_frames(track, n)
    heard = viterbi(_pad(classifier_log_probs(audio, phone_net), n))
    step = int(round(phonemes.CHUNK_SECONDS * FPS))
    starts = range(0, n, step)
    rejected = [c0 for c0 in starts if not words or float((heard[c0 : c0 + step] == prior[c0 : c0 + step]).mean()) < WORDS_MIN_AGREEMENT]
    everywhere = len(rejected) == len(starts)
    mel = _pad(classifier_log_probs(audio, net), n) if rejected else None
    if everywhere:
        lp = mel
    else:
        lp = fuse(_pad(classifier_log_probs(audio, phone_net, phone_indices(track, n)), n), prior, WORDS_WEIGHT)
        lp[:, VISEME_INDEX["PP"]] += WORDS_CLOSURE_BONUS
        for c0 in rejected:
            lp[c0 : c0 + step] = mel[c0 : c0 + step]
    segs = segments(viterbi(lp))
    if segs:
        segs[-1].end = max(segs[-1].end, duration)
    out = VisemeTrack([VisemeSegment(s.viseme, s.start, min(s.end, duration)) for s in segs if s.start < duration],
                      duration, "classify" if everywhere else "words")
    if rejected:
        parts = ", ".join(f"{c0 / FPS:.1f}-{min(c0 + step, n) / FPS:.1f} s" for c0 in rejected)
        said = " ".join(words[:20]) + (" ..." if len(words) > 20 else "")
        out.notes.append(f"the recognised words ({said or 'none'}) disagree with the sounds heard in the audio "
                         f"({parts}): the viseme classifier's visemes there")
    return out


def _pad(lp: np.ndarray, n: int) -> np.ndarray:
    """(n, K) ``lp`` cut or padded with its last row (zeros when empty) to ``n`` frames."""
    if lp.shape[0] >= n:
        return lp[:n]
    last = lp[-1:] if lp.shape[0] else np.zeros((1, lp.shape[1]), lp.dtype)
    return np.concatenate([lp, np.repeat(last, n - lp.shape[0], 0)])


MAX_WORDS_PER_SECOND = 8.0  # fast speech is ~4-5 words/s; more words than this cannot be in the audio
MIN_AGREEMENT = 0.45  # aligned vs classifier visemes agree on 0.71-0.86 of the frames for the right transcript,
# 0.02-0.29 for another sentence (5 espeak-ng sentences, each aligned to the next one's words); with the
# voice en-us+f3 at 220 wpm, pitch 70: 0.67-0.76 right, 0.15 or not alignable wrong. Not measured on
# human voices (no transcribed recordings here): the classifier was trained on espeak-ng speech.


def _aligned(audio: np.ndarray, text: str, recognizer: str, notes: list[str]) -> VisemeTrack | None:
    """The forced alignment of ``text``, or None with a note saying why the transcript was not used;
    a note too when the alignment disagrees with the classifier (the transcript does not match)."""
    from face3d.animation.lipsync.phonemes import ALIGN_MAX_SECONDS, normalize_transcript

    duration = audio.shape[0] / RATE
    words = normalize_transcript(text)
    instead = f"visemes recognised from the audio by the {recognizer} instead"
    if not words:
        notes.append(f"the transcript is empty (no words); {instead}")
        return None
    if duration > ALIGN_MAX_SECONDS:
        notes.append(f"the audio is {duration:.0f} s long and forced alignment works up to {ALIGN_MAX_SECONDS:.0f} s: "
                     f"the transcript was not used; {instead}")
        return None
    if len(words) > MAX_WORDS_PER_SECOND * max(duration, 1.0):
        notes.append(f"the transcript has {len(words)} words for {duration:.1f} s of audio (more than "
                     f"{MAX_WORDS_PER_SECOND:g} words/s), so it cannot match the speech: not used; {instead}")
        return None
    phones = align(audio, text)
    if phones is None:
        notes.append(f"the transcript could not be aligned to the audio (does it match the speech?); {instead}")
        return None
    track = visemes_from_phones(phones)
    agree = viseme_agreement(track, classify_audio(audio))
    if agree < MIN_AGREEMENT:
        track.notes.append(f"the transcript probably does not match the audio: its aligned visemes agree with the "
                           f"ones heard in the audio on only {100 * agree:.0f}% of the frames (a matching transcript "
                           f"gives about 70-85%)")
    return track


def viseme_agreement(a: VisemeTrack, b: VisemeTrack, fps: float = 100.0) -> float:
    """Fraction of frames (at ``fps``, over a's duration) where ``a`` and ``b`` show the same viseme."""
    n = max(int(a.duration * fps), 1)

    def frames(track: VisemeTrack) -> np.ndarray:
        out = np.full(n, "sil", dtype=object)
        for s in track.segments:
            out[int(s.start * fps) : int(np.ceil(s.end * fps))] = s.viseme
        return out

    return float((frames(a) == frames(b)).mean())
