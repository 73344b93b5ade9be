"""Phoneme -> viseme tables and viseme -> ARKit blendshape poses.

Visemes are the 15 of Oculus/Meta Lipsync, in this order (index = position in ``VISEMES``)::

    sil  silence / rest            PP  p b m            FF  f v
    TH   th (thin, this)           DD  t d              kk  k g (and ng, h)
    CH   ch j sh zh                SS  s z              nn  n l
    RR   r (and r-coloured ER)     aa  car, cut, cat    E   bed, day, bird-less e vowels
    ih   tip, see, y               oh  toe, thought     ou  book, you, w

Meta's table gives the consonant groups and one example vowel per vowel viseme; the
English vowels it does not list are put with the nearest mouth shape (open: AA AE AH AY AW
-> aa; mid-spread: EH EY -> E; close-spread: IH IY Y -> ih; rounded-mid: AO OW OY -> oh;
rounded-close: UH UW W -> ou). HH and NG (no lip gesture of their own) go to kk, ER to RR.
Two phone sets map onto the visemes the same way: the CMU/ARPAbet set of pocketsphinx
(``CMU_TO_VISEME``) and espeak-ng's English phoneme mnemonics (``ESPEAK_TO_VISEME``, used
only to build ground truth).
"""

from __future__ import annotations

import numpy as np

from face3d.arkit import ARKIT_INDEX, ARKIT_NAMES

VISEMES: tuple[str, ...] = ("sil", "PP", "FF", "TH", "DD", "kk", "CH", "SS", "nn", "RR", "aa", "E", "ih", "oh", "ou")
VISEME_INDEX: dict[str, int] = {v: i for i, v in enumerate(VISEMES)}

CMU_TO_VISEME: dict[str, str] = {
    "SIL": "sil",
    "P": "PP", "B": "PP", "M": "PP",
    "F": "FF", "V": "FF",
    "TH": "TH", "DH": "TH",
    "T": "DD", "D": "DD",
    "K": "kk", "G": "kk", "NG": "kk", "HH": "kk",
    "CH": "CH", "JH": "CH", "SH": "CH", "ZH": "CH",
    "S": "SS", "Z": "SS",
    "N": "nn", "L": "nn",
    "R": "RR", "ER": "RR",
    "AA": "aa", "AE": "aa", "AH": "aa", "AY": "aa", "AW": "aa",
    "EH": "E", "EY": "E",
    "IH": "ih", "IY": "ih", "Y": "ih",
    "AO": "oh", "OW": "oh", "OY": "oh",
    "UH": "ou", "UW": "ou", "W": "ou",
}

# espeak-ng English phoneme mnemonics (en-us voice). Looked up by longest matching prefix, so
# stressed/variant forms ("@2", "3:", "aI@", "oU#", "l/", "n-", "t#") resolve to their base.
ESPEAK_TO_VISEME: dict[str, str] = {
    "_": "sil", "?": "sil",
    "p": "PP", "b": "PP", "m": "PP",
    "f": "FF", "v": "FF",
    "T": "TH", "D": "TH",
    "t": "DD", "d": "DD", "*": "DD",
    "k": "kk", "g": "kk", "x": "kk", "N": "kk", "h": "kk",
    "tS": "CH", "dZ": "CH", "S": "CH", "Z": "CH",
    "s": "SS", "z": "SS",
    "n": "nn", "l": "nn", "@L": "nn",
    "r": "RR", "3": "RR", "@r": "RR", "A@": "aa",
    "a": "aa", "A": "aa", "V": "aa", "@": "aa", "0": "aa", "aI": "aa", "aU": "aa",
    "e": "E", "E": "E", "eI": "E", "e@": "E",
    "i": "ih", "I": "ih", "j": "ih", "i@": "ih",
    "O": "oh", "o": "oh", "oU": "oh", "OI": "oh", "O@": "oh", "o@": "oh",
    "U": "ou", "u": "ou", "w": "ou", "U@": "ou",
}


def cmu_viseme(phone: str) -> str:
    """Viseme of an ARPAbet phone ('AH0', 'ah', 'SIL', '+NSN+', ...); fillers and unknowns are 'sil'."""
    base = phone.strip().upper().rstrip("012")
    return CMU_TO_VISEME.get(base, "sil")


def espeak_viseme(mnemonic: str) -> str:
    """Viseme of an espeak-ng phoneme mnemonic by longest prefix ('@2' -> '@' -> 'aa'); unknown -> 'sil'."""
    m = mnemonic.strip().lstrip("'',%=")
    for n in range(len(m), 0, -1):
        v = ESPEAK_TO_VISEME.get(m[:n])
        if v is not None:
            return v
    return "sil"


# ARKit pose of each viseme (weights in [0, 1]; names absent are 0). Symmetric shapes are given
# once without side and expanded to Left/Right. mouthClose is kept <= jawOpen (corrective shape).
_POSES: dict[str, dict[str, float]] = {
    "sil": {},
    "PP": {"jawOpen": 0.06, "mouthClose": 0.06, "mouthPress": 0.45, "mouthRollLower": 0.25, "mouthRollUpper": 0.15},
    "FF": {"jawOpen": 0.08, "mouthRollLower": 0.55, "mouthUpperUp": 0.2, "mouthShrugLower": 0.1},
    "TH": {"jawOpen": 0.16, "tongueOut": 0.35, "mouthStretch": 0.1},
    "DD": {"jawOpen": 0.2, "mouthStretch": 0.15, "mouthShrugUpper": 0.1},
    "kk": {"jawOpen": 0.24, "mouthStretch": 0.12},
    "CH": {"jawOpen": 0.14, "mouthFunnel": 0.5, "mouthPucker": 0.2, "mouthUpperUp": 0.1},
    "SS": {"jawOpen": 0.08, "mouthStretch": 0.35, "mouthSmile": 0.15},
    "nn": {"jawOpen": 0.16, "mouthStretch": 0.1},
    "RR": {"jawOpen": 0.15, "mouthFunnel": 0.35, "mouthPucker": 0.25},
    "aa": {"jawOpen": 0.6, "mouthLowerDown": 0.3},
    "E": {"jawOpen": 0.35, "mouthStretch": 0.3, "mouthSmile": 0.15, "mouthLowerDown": 0.15},
    "ih": {"jawOpen": 0.2, "mouthStretch": 0.3, "mouthSmile": 0.25},
    "oh": {"jawOpen": 0.45, "mouthFunnel": 0.55, "mouthPucker": 0.2},
    "ou": {"jawOpen": 0.15, "mouthPucker": 0.8, "mouthFunnel": 0.3},
}


def _expand(pose: dict[str, float]) -> np.ndarray:
    w = np.zeros(len(ARKIT_NAMES), np.float32)
    for name, value in pose.items():
        for n in ([name] if name in ARKIT_INDEX else [name + "Left", name + "Right"]):
            w[ARKIT_INDEX[n]] = value
    return w


VISEME_TO_ARKIT: np.ndarray = np.stack([_expand(_POSES[v]) for v in VISEMES])
"""(15, 52) ARKit weights of each viseme's pose, rows in ``VISEMES`` order."""

# Cohen-Massaro dominance magnitude per viseme: lip closures and labiodentals must be reached
# (high), tongue-only consonants borrow the neighbouring vowels' lips (low).
DOMINANCE: np.ndarray = np.array(
    [0.6, 1.0, 0.9, 0.5, 0.3, 0.25, 0.8, 0.5, 0.3, 0.6, 0.7, 0.6, 0.6, 0.7, 0.8], np.float32
)
