"""Lip sync judged per voice, on voices the classifier was not trained on, by what a viewer sees.

    OMP_NUM_THREADS=1 python benchmarks/lipsync_voices.py --set dev        # choices are made here
    OMP_NUM_THREADS=1 python benchmarks/lipsync_voices.py --set held-out   # Festival: the judge, run at the end
    OMP_NUM_THREADS=1 python benchmarks/lipsync_voices.py --set control    # espeak-ng (in the training set)

Each of ``benchmarks/animation.py``'s 24 sentences is spoken by each voice of the set
(:mod:`face3d.animation.lipsync.voices`; ``train.DEV_VOICES``, ``train.HELD_OUT_VOICES``), saved
as a 16 kHz WAV and run through ``face3d.animate_audio`` in each mode: no transcript with the
default viseme classifier, no transcript with pocketsphinx's phone recognition, and with the
transcript (forced alignment). Predicted visemes (``meta['viseme_segments']``) are compared with
the voice's reference at 100 fps: frame accuracy on all frames and on speech frames (reference
not 'sil'), mean over clips; per viseme class (``evaluate.VISEME_CLASSES``: lip closures p/b/m,
labiodentals f/v, rounded vowels, open jaw) frame recall and precision pooled over the clips;
closure events found (a predicted closure starting within 100 ms of each reference closure) and
their median onset error. Real-time factor: seconds of the whole ``animate_audio`` call per audio
second, summed over the clips, in the same run (after one warm-up call), as wall-clock time and
as this process's CPU time (the second barely depends on what else runs on a shared machine).

References: espeak-ng, Flite and Festival report exact phone timings. Pico does not; its
reference is pocketsphinx's forced alignment of the clean audio, so its "transcript" row
compares the alignment with itself and is not reported; how far that alignment is from exact
timings shows in the "transcript" rows of the exact voices.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from animation import SENTENCES, predicted_frames

from face3d.animation.lipsync import animate_audio
from face3d.animation.lipsync.evaluate import (
    VISEME_CLASSES,
    ClassCounts,
    class_counts,
    score,
)
from face3d.animation.lipsync.train import DEV_VOICES, HELD_OUT_VOICES
from face3d.animation.lipsync.visemes import VISEME_INDEX
from face3d.animation.lipsync.voices import frames, speak
from face3d.io.audio import save_wav

SETS = {"dev": DEV_VOICES, "held-out": HELD_OUT_VOICES, "control": ("espeak:",)}
MODES = {"classifier": {"recognizer": "classifier"}, "fused": {"recognizer": "fused"}, "words": {"recognizer": "words"}, "pocketsphinx": {"recognizer": "pocketsphinx"},
         "transcript": {}}


def evaluate_voice(voice: str, texts: list[str], modes: list[str], tmp: Path) -> dict[str, dict]:
    """Per mode: mean accuracies, pooled class counts, total compute and audio seconds over ``texts``."""
    res = {m: {"acc": [], "speech": [], "counts": {k: ClassCounts() for k in VISEME_CLASSES}, "compute": 0.0, "cpu": 0.0, "audio": 0.0}
           for m in modes}
    for i, text in enumerate(texts):
        ref = speak(text, voice)
        path = save_wav(tmp / f"{i}.wav", ref.audio, 16000)
        truth = frames(ref)
        speech = truth != VISEME_INDEX["sil"]
        for m in modes:
            if m == "transcript" and not ref.exact:
                continue
            kw = dict(MODES[m], text=text) if m == "transcript" else MODES[m]
            t0, c0 = time.perf_counter(), time.process_time()
            anim = animate_audio(path, **kw)
            r = res[m]
            r["compute"] += time.perf_counter() - t0
            r["cpu"] += time.process_time() - c0
            r["audio"] += ref.duration
            pred = predicted_frames(anim, ref.duration)
            r["acc"].append(score(pred, truth).accuracy)
            r["speech"].append(float((pred[speech] == truth[speech]).mean()))
            c = class_counts(pred, truth)
            r["counts"] = {k: r["counts"][k] + c[k] for k in VISEME_CLASSES}
    return {m: r for m, r in res.items() if r["acc"]}


def _f(x: float, digits: int = 2) -> str:
    return "–" if np.isnan(x) else f"{x:.{digits}f}"


def table(results: dict[str, dict[str, dict]]) -> str:
    head = ("| voice | mode | clips | acc. all | acc. speech | closure R / P | closures found | closure onset ms | f/v R / P | "
            "rounded R / P | open R / P | real-time factor (wall / CPU) |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for voice, per in results.items():
        for m, r in per.items():
            c = r["counts"]
            on = c["closure"].onset_errors_ms
            lines.append(f"| {voice} | {m} | {len(r['acc'])} | {np.mean(r['acc']):.3f} | {np.mean(r['speech']):.3f} | "
                         f"{_f(c['closure'].recall)} / {_f(c['closure'].precision)} | {_f(c['closure'].event_recall)} | "
                         f"{_f(float(np.median(on)) if on else float('nan'), 0)} | "
                         + " | ".join(f"{_f(c[k].recall)} / {_f(c[k].precision)}" for k in ("labiodental", "rounded", "open"))
                         + f" | {r['compute'] / r['audio']:.3f} / {r['cpu'] / r['audio']:.3f} |")
    return "\n".join(lines)


def pooled(results: dict[str, dict[str, dict]]) -> str:
    """Mean over voices of each mode's accuracies and pooled closure recall."""
    lines = ["| mode | voices | acc. all (mean of voices) | acc. speech | closure recall | closures found | real-time factor (wall / CPU) |",
             "|---|---|---|---|---|---|---|"]
    modes = {m for per in results.values() for m in per}
    for m in [m for m in MODES if m in modes]:
        rs = [per[m] for per in results.values() if m in per]
        cl = sum((r["counts"]["closure"] for r in rs), ClassCounts())
        lines.append(f"| {m} | {len(rs)} | {np.mean([np.mean(r['acc']) for r in rs]):.3f} | {np.mean([np.mean(r['speech']) for r in rs]):.3f} | "
                     f"{_f(cl.recall)} | {_f(cl.event_recall)} | {sum(r['compute'] for r in rs) / sum(r['audio'] for r in rs):.3f} / "
                     f"{sum(r['cpu'] for r in rs) / sum(r['audio'] for r in rs):.3f} |")
    return "\n".join(lines)


def fusion_sweep(voices: list[str], texts: list[str], grid: dict[str, list[float]], cache: str = "") -> str:
    """Mean over voices of frame accuracy (all and speech frames) and pooled closure recall of the
    'fused' recogniser for each (log-mel net share, fusion weight, Viterbi switch penalty, closure
    bonus) of ``grid`` (``timing.fused_log_probs``). ``cache``: a pickle of each clip's audio,
    pocketsphinx phones and reference, reused across runs."""
    import itertools
    import pickle

    from face3d.animation.lipsync.classifier import default_phone_net, viterbi
    from face3d.animation.lipsync.phonemes import recognize
    from face3d.animation.lipsync.timing import (
        classifier_log_probs,
        fuse,
        phone_frames,
        phone_indices,
    )

    store = pickle.loads(Path(cache).read_bytes()) if cache and Path(cache).exists() else {}
    clips = []
    for v in voices:
        for text in texts:
            if (v, text) not in store:
                ref = speak(text, v)
                store[v, text] = (ref.audio, recognize(ref.audio), frames(ref))
            audio, track, truth = store[v, text]
            n = truth.shape[0]
            lps = [classifier_log_probs(audio, default_phone_net(), phone_indices(track, n))[:n], classifier_log_probs(audio)[:n]]
            clips.append((v, [np.pad(lp, ((0, n - lp.shape[0]), (0, 0))) for lp in lps], phone_frames(track, n), truth))
    if cache:
        Path(cache).write_bytes(pickle.dumps(store))
    lines = ["| log-mel net share | fusion weight | switch penalty | closure bonus | acc. all | acc. speech | closure recall / precision |",
             "|---|---|---|---|---|---|---|"]
    for share, w, pen, bonus in itertools.product(grid["share"], grid["weight"], grid["penalty"], grid["bonus"]):
        tracks = []
        for v, (lp_phones, lp_mel), prior, truth in clips:
            x = fuse((1.0 - share) * lp_phones + share * lp_mel, prior, w)
            x[:, VISEME_INDEX["PP"]] += bonus
            tracks.append((v, viterbi(x, pen), truth))
        acc, acc_speech, cl = sweep_scores(tracks)
        lines.append(f"| {share} | {w} | {pen} | {bonus} | {acc:.3f} | {acc_speech:.3f} | {cl.recall:.3f} / {cl.precision:.3f} |")
    return "\n".join(lines)


def sweep_scores(tracks: list[tuple[str, np.ndarray, np.ndarray]]) -> tuple[float, float, ClassCounts]:
    """(voice, predicted, true) viseme tracks (T,) -> the mean over voices of each voice's mean frame
    accuracy on all frames and on speech frames (not 'sil'), and the closure counts pooled over all."""
    accs: dict[str, list[float]] = {}
    speech: dict[str, list[float]] = {}
    cl = ClassCounts()
    for v, pred, truth in tracks:
        s = truth != VISEME_INDEX["sil"]
        accs.setdefault(v, []).append(float((pred == truth).mean()))
        speech.setdefault(v, []).append(float((pred[s] == truth[s]).mean()))
        cl = cl + class_counts(pred, truth)["closure"]
    return float(np.mean([np.mean(a) for a in accs.values()])), float(np.mean([np.mean(a) for a in speech.values()])), cl


def words_sweep(voices: list[str], texts: list[str], grid: dict[str, list[float]], cache: str = "") -> str:
    """Mean over voices of frame accuracy (all and speech frames), pooled closure recall and the
    share of clips whose words were rejected, of the 'words' recogniser (``timing.words_track``) for
    each (fusion weight, closure bonus, minimum agreement) of ``grid``. ``cache``: a pickle of each
    clip's audio, recognised-word phones and reference, reused across runs."""
    import itertools
    import pickle

    from face3d.animation.lipsync.classifier import default_phone_net, viterbi
    from face3d.animation.lipsync.phonemes import recognize_words
    from face3d.animation.lipsync.timing import _pad, classifier_log_probs, fuse, phone_frames, phone_indices

    store = pickle.loads(Path(cache).read_bytes()) if cache and Path(cache).exists() else {}
    clips = []
    for v in voices:
        for text in texts:
            if (v, text) not in store:
                ref = speak(text, v)
                store[v, text] = (ref.audio, recognize_words(ref.audio)[0], frames(ref))
            audio, track, truth = store[v, text]
            n = truth.shape[0]
            prior = phone_frames(track, n)
            heard = viterbi(_pad(classifier_log_probs(audio, default_phone_net()), n))
            agree = float((heard == prior).mean())
            clips.append((v, _pad(classifier_log_probs(audio, default_phone_net(), phone_indices(track, n)), n),
                          _pad(classifier_log_probs(audio), n), prior, agree, truth))
    if cache:
        Path(cache).write_bytes(pickle.dumps(store))
    lines = ["| fusion weight | closure bonus | min. agreement | acc. all | acc. speech | closure recall / precision | clips rejected |",
             "|---|---|---|---|---|---|---|"]
    for w, bonus, th in itertools.product(grid["weight"], grid["bonus"], grid["agreement"]):
        tracks, rejected = [], 0
        for v, lp_words, lp_mel, prior, agree, truth in clips:
            if agree < th:
                x, rejected = lp_mel, rejected + 1
            else:
                x = fuse(lp_words, prior, w)
                x[:, VISEME_INDEX["PP"]] += bonus
            tracks.append((v, viterbi(x), truth))
        acc, acc_speech, cl = sweep_scores(tracks)
        lines.append(f"| {w} | {bonus} | {th} | {acc:.3f} | {acc_speech:.3f} | {cl.recall:.3f} / {cl.precision:.3f} | {rejected} / {len(clips)} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--set", choices=sorted(SETS), default="dev")
    ap.add_argument("--voices", default="", help="comma-separated voices instead of --set")
    ap.add_argument("--sentences", type=int, default=len(SENTENCES))
    ap.add_argument("--texts", default="", help="a file of other sentences (one a line) instead of benchmarks/animation.py's, "
                    "e.g. benchmarks/lipsync_other_text.txt: unusual words, names and numbers")
    ap.add_argument("--modes", default=",".join(MODES))
    ap.add_argument("--net", default="", help="log-mel viseme classifier weights to use instead of the shipped ones")
    ap.add_argument("--phone-net", default="", help="phone-reading viseme classifier weights to use instead of the shipped ones")
    ap.add_argument("--sweep", action="store_true", help="only the fusion weight x switch penalty x closure bonus grid (on --set dev)")
    ap.add_argument("--words-sweep", action="store_true", help="only the 'words' recogniser's weight x closure bonus x agreement grid")
    ap.add_argument("--cache", default="", help="with --sweep/--words-sweep: pickle of the clips and their pocketsphinx phones")
    args = ap.parse_args(argv)
    if args.net:
        from face3d.animation.lipsync import classifier

        classifier._cache["net"] = classifier.load_net(args.net)
    if args.phone_net:
        from face3d.animation.lipsync import classifier

        classifier._cache["phone_net"] = classifier.load_net(args.phone_net)
    voices = args.voices.split(",") if args.voices else list(SETS[args.set])
    texts = [t.strip() for t in Path(args.texts).read_text().splitlines() if t.strip()] if args.texts else list(SENTENCES)
    modes = args.modes.split(",")
    print(f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}; "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}; weights: {args.net or 'shipped'}, {args.phone_net or 'shipped'}", flush=True)
    if args.sweep:
        grid = {"share": [0.0, 0.2, 0.25, 0.3, 1.0], "weight": [0.0, 1.0, 2.0, 3.0, 5.0], "penalty": [2.0, 4.0], "bonus": [0.0, 1.0, 2.0]}
        print(fusion_sweep(voices, texts[: args.sentences], grid, args.cache))
        return 0
    if args.words_sweep:
        grid = {"weight": [1.0, 2.0, 3.0, 4.0], "bonus": [0.0, 1.0], "agreement": [0.0, 0.35, 0.4, 0.45, 0.5]}
        print(words_sweep(voices, texts[: args.sentences], grid, args.cache))
        return 0
    results = {}
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        save_wav(tmp / "warm.wav", speak("warm up", "espeak:").audio, 16000)
        for kw in MODES.values():
            animate_audio(tmp / "warm.wav", text="warm up" if not kw else None, **kw)
        for v in voices:
            results[v] = evaluate_voice(v, texts[: args.sentences], modes, tmp)
            print("\n".join(table({v: results[v]}).splitlines()[2:]), flush=True)
    print()
    print(table(results))
    print()
    print(pooled(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
