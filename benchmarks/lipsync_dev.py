"""How the phone recogniser's settings were chosen: a grid on a development set.

    python benchmarks/lipsync_dev.py

20 Harvard sentences (lists 2-3) that are *not* in ``benchmarks/animation.py``'s test set are
spoken by espeak-ng; for each (language weight, phone insertion penalty) pocketsphinx's
all-phone search runs on them exactly as ``face3d.animation.lipsync.phonemes.recognize`` does,
and the table gives the mean frame-level viseme accuracy at 100 fps. The library uses lw 0.25,
wip 1.0: inside the flat optimum (at the time of choosing, every cell with lw <= 1 and wip >= 0.65
was within 0.01 of the best, 0.507; the old setting lw 2.0 gave 0.450). The front end was then
changed on the same set (no spectral noise subtraction, live CMN: 0.503 -> 0.524 at lw 0.25,
wip 1.0; see ``phonemes.allphone_decoder``). The benchmark's 24 sentences were scored once
after each choice. Note: this grid decodes the sentences one after another with one decoder, so
its live CMN carries over between sentences; since 2026-12-06 ``recognize()`` resets the CMN and
warms it on each recording itself (development set 0.513 at lw 0.25, wip 1.0).
"""

from __future__ import annotations

import itertools

import numpy as np

from face3d.animation.lipsync import phonemes as P
from face3d.animation.lipsync.espeak import synthesize
from face3d.animation.lipsync.evaluate import score, viseme_frames
from face3d.animation.lipsync.visemes import cmu_viseme
from face3d.io.audio import _resample

DEV = [
    "The stale smell of old beer lingers.", "A pot of tea helps to pass the evening.", "Smoky fires lack flame and heat.",
    "The soft cushion broke the man's fall.", "The salt breeze came across from the sea.", "The girl at the booth sold fifty bonds.",
    "The small pup gnawed a hole in the sock.", "The fish twisted and turned on the bent hook.",
    "Press the pants and sew a button on the vest.", "The swan dive was far short of perfect.",
    "The beauty of the view stunned the young boy.", "Two blue fish swam in the tank.", "Her purse was full of useless trash.",
    "The colt reared and threw the tall rider.", "It snowed, rained, and hailed the same morning.", "Read verse out loud for pleasure.",
    "Hoist the load to your left shoulder.", "Take the winding path to reach the lake.", "Note closely the size of the gas tank.",
    "Wipe the grease off his dirty face.",
]


def dev_set() -> list[tuple[np.ndarray, np.ndarray, float]]:
    """(16 kHz audio, ground-truth viseme frames, duration s) per development sentence."""
    out = []
    for text in DEV:
        sp = synthesize(text)
        audio = _resample(sp.audio, sp.rate, P.RATE).astype(np.float32)
        labels, starts, ends = sp.viseme_segments()
        duration = audio.shape[0] / P.RATE
        out.append((audio, viseme_frames(labels, starts, ends, duration), duration))
    return out


def accuracy(data: list[tuple[np.ndarray, np.ndarray, float]], lw: float, wip: float) -> float:
    """Mean frame viseme accuracy of all-phone recognition with these settings."""
    d = P.allphone_decoder(lw, wip)
    accs = []
    for audio, truth, duration in data:
        track = P._fill(P._decode_phones(d, audio), duration)
        pred = viseme_frames([cmu_viseme(s.phone) for s in track], [s.start for s in track], [s.end for s in track], duration)
        accs.append(score(pred, truth).accuracy)
    return float(np.mean(accs))


def main() -> None:
    data = dev_set()
    lws, wips = (0.1, 0.25, 0.5, 1.0, 2.0, 4.0), (0.01, 0.65, 1.0, 10.0)
    print("| lw \\ wip | " + " | ".join(str(w) for w in wips) + " |")
    print("|---" * (len(wips) + 1) + "|")
    grid = {(lw, wip): accuracy(data, lw, wip) for lw, wip in itertools.product(lws, wips)}
    for lw in lws:
        print(f"| {lw} | " + " | ".join(f"{grid[lw, w]:.3f}" for w in wips) + " |")
    best = max(grid, key=lambda k: grid[k])
    print(f"\nbest: lw {best[0]}, wip {best[1]} -> {grid[best]:.3f} on {len(DEV)} development sentences")


if __name__ == "__main__":
    main()
