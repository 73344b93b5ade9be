"""Multi-voice lip-sync data: synthesisers with reference timings, codecs, reverb, class scores, fusion."""

from __future__ import annotations

import shutil
from dataclasses import replace

import numpy as np
import pytest

from face3d.animation.lipsync import train as T
from face3d.animation.lipsync import voices as V
from face3d.animation.lipsync.evaluate import ClassCounts, class_counts, viseme_frames
from face3d.animation.lipsync.features import n_frames
from face3d.animation.lipsync.visemes import VISEME_INDEX
from face3d.errors import BadInputError, MissingDependencyError

TEXT = "Peter Piper picked a peck of pickled peppers."
PIPER = "sil PP ih DD RR PP aa PP RR PP ih kk DD aa PP E kk aa FF PP ih kk aa nn DD PP E PP RR SS sil".split()


def _needs(exe):
    return pytest.mark.skipif(shutil.which(exe) is None, reason=f"{exe} not installed (.ci/run installs it)")


def test_radio_phone_set():
    assert [V.radio_viseme(p) for p in ["pau", "ax", "axr", "em", "p", "uw", "dx", "zz"]] == \
        ["sil", "aa", "RR", "PP", "PP", "ou", "DD", "sil"]


@pytest.mark.parametrize("voice", ["espeak:", "espeak:f3", pytest.param("flite:slt", marks=_needs("flite")),
                                   pytest.param("flite:kal", marks=_needs("flite")),
                                   pytest.param("festival:kal_diphone", marks=_needs("festival")),
                                   pytest.param("pico:en-US", marks=_needs("pico2wave"))])
def test_every_engine_speaks_with_reference_visemes(voice):
    sp = V.speak(TEXT, voice)
    assert sp.audio.dtype == np.float32 and sp.audio.ndim == 1 and 1.5 < sp.duration < 4.0 and np.abs(sp.audio).max() > 0.05
    assert sp.exact == (not voice.startswith("pico")) and sp.voice == voice
    assert 0.0 <= sp.starts[0] < 0.1 and sp.ends[-1] == pytest.approx(sp.duration, abs=1e-3) and np.all(sp.starts[1:] >= sp.ends[:-1] - 1e-9)
    spoken = [v for v in sp.visemes if v != "sil"]
    assert spoken == [v for v in PIPER if v != "sil"] or voice.startswith("espeak")  # espeak-ng's own lexicon differs a little
    assert spoken.count("PP") >= 8
    fr = V.frames(sp)
    assert fr.shape == (round(sp.duration * 100),) and (fr == VISEME_INDEX["PP"]).sum() > 20


def test_speak_errors(monkeypatch):
    with pytest.raises(BadInputError, match="engine"):
        V.speak(TEXT, "mbrola:us1")
    with pytest.raises(BadInputError, match="empty"):
        V.speak("  ", "flite:slt")
    monkeypatch.setattr(V.shutil, "which", lambda _: None)
    with pytest.raises(MissingDependencyError, match="flite"):
        V.speak(TEXT, "flite:slt")


def test_voice_sets_are_disjoint_and_festival_is_held_out():
    train = {v for v in T.TRAIN_VOICES if v != "espeak"}
    assert not train & set(T.DEV_VOICES) and not train & set(T.HELD_OUT_VOICES) and not set(T.DEV_VOICES) & set(T.HELD_OUT_VOICES)
    assert all(v.startswith("festival:") for v in T.HELD_OUT_VOICES) and not any("festival" in v for v in T.TRAIN_VOICES)
    # no held-out speaker is trained on: Festival's kal and slt are Flite's kal/kal16 and slt, which are development voices
    assert not any(name in v for v in train for name in ("kal", "slt", "ked"))


@pytest.mark.parametrize("codec,kbps,rate", [("mp3", 24, 8000), ("opus", 16, 16000), ("pcm", 0, 8000)])
def test_codec_round_trip_stays_aligned(codec, kbps, rate):
    audio = V.speak(TEXT, "espeak:").audio
    out = T.codec_round_trip(audio, codec, kbps, rate)
    assert out.shape == audio.shape and out.dtype == np.float32
    assert np.corrcoef(audio, out)[0, 1] > 0.9  # a delay of even 1 ms would drop this far lower
    shifted = np.corrcoef(audio[:-16], out[16:])[0, 1]
    assert np.corrcoef(audio, out)[0, 1] > shifted


def test_reverb_and_augment_keep_labels_in_step():
    rng = np.random.default_rng(0)
    audio, labels = T.utterance(TEXT, rng, "espeak")
    wet = T.reverb(audio, rng)
    assert wet.shape == audio.shape and not np.allclose(wet, audio)
    for _ in range(5):
        a2, l2 = T.augment(audio, labels, rng)
        assert n_frames(a2.shape[0]) == l2.shape[0] and np.abs(a2).max() <= 1.0


@pytest.mark.skipif(shutil.which("flite") is None or shutil.which("pico2wave") is None, reason="flite/pico2wave not installed")
def test_training_voices_give_labels_of_the_audio_length():
    rng = np.random.default_rng(1)
    for voice in T.TRAIN_VOICES:
        audio, labels = T.utterance(TEXT, rng, voice)
        assert labels.shape == (n_frames(audio.shape[0]),) and (labels == VISEME_INDEX["PP"]).sum() > 20


def test_class_counts():
    t = viseme_frames(["sil", "aa", "PP", "aa", "FF", "sil"], [0, .1, .3, .35, .5, .6], [.1, .3, .35, .5, .6, .8], .8)
    p = viseme_frames(["sil", "aa", "PP", "aa", "oh", "sil"], [0, .1, .32, .36, .5, .6], [.1, .32, .36, .5, .6, .8], .8)
    c = class_counts(p, t)
    assert (c["closure"].hits, c["closure"].true, c["closure"].pred) == (3, 5, 4)
    assert c["closure"].recall == pytest.approx(0.6) and c["closure"].precision == pytest.approx(0.75)
    assert c["closure"].event_recall == 1.0 and c["closure"].onset_errors_ms == pytest.approx((20.0,))
    assert c["labiodental"].recall == 0.0 and np.isnan(c["labiodental"].precision) and c["labiodental"].event_recall == 0.0
    assert c["rounded"].pred == 10 and np.isnan(c["rounded"].recall)
    total = c["closure"] + c["closure"]
    assert isinstance(total, ClassCounts) and total.true == 10 and len(total.onset_errors_ms) == 2
    with pytest.raises(BadInputError):
        class_counts(p[:-1], t)


def test_fused_recognizer():
    from face3d.animation.lipsync.phonemes import PhoneSegment, PhoneTrack
    from face3d.animation.lipsync.timing import fuse, phone_frames, timed_visemes

    lp = np.log(np.full((4, 15), 1 / 15, np.float32))
    out = fuse(lp, np.array([1, 1, 2, 0]), 2.0)
    assert out[0, 1] == pytest.approx(lp[0, 1] + 2.0) and out[3, 0] == pytest.approx(lp[3, 0] + 2.0) and out[0, 0] == lp[0, 0]
    tr = PhoneTrack([PhoneSegment("SIL", 0.0, 0.1), PhoneSegment("M", 0.1, 0.15), PhoneSegment("AA", 0.15, 0.3)], 0.3, "t")
    fr = phone_frames(tr, 30)
    assert fr.tolist() == [0] * 10 + [1] * 5 + [10] * 15
    sp = V.speak(TEXT, "espeak:")
    track = timed_visemes(sp.audio, recognizer="fused")
    assert track.method == "fused" and track.segments[-1].end == pytest.approx(sp.duration)
    assert sum(s.viseme == "PP" for s in track.segments) >= 6


def test_training_checkpoint_resumes_to_the_same_weights(tmp_path):
    """A run killed during epoch 2 of 3 and started again resumes from epoch 1's checkpoint and
    ends with the weights of an uninterrupted run."""
    import torch

    data = [T.utterance(t, np.random.default_rng(i), "espeak") for i, t in enumerate([TEXT, "She sells sea shells."])]
    kw = dict(recipe=replace(T.RECIPES["voices"], epochs=3, channels=8), batch=2, lr=1e-2)
    whole = T.train(data, log=lambda *_: None, **kw)

    class Killed(Exception):
        pass

    def killer(msg):
        if msg.startswith("epoch 2/"):
            raise Killed

    ck = str(tmp_path / "ck.pt")
    with pytest.raises(Killed):
        T.train(data, log=killer, checkpoint=ck, **kw)
    assert torch.load(ck, weights_only=False)["epoch"] == 1
    logs: list[str] = []
    resumed = T.train(data, log=logs.append, checkpoint=ck, **kw)
    assert logs[0].startswith("resumed") and len(logs) == 3
    for a, b in zip(whole.state_dict().values(), resumed.state_dict().values()):
        torch.testing.assert_close(a, b)


def test_speed_perturbation_raises_pitch_and_retimes_the_labels():
    rate = 16000
    tone = np.sin(2 * np.pi * 1000 * np.arange(rate) / rate).astype(np.float32)
    labels = np.stack([np.repeat(np.arange(10), 10), np.repeat(np.arange(10), 10) + 100], 1)  # 100 frames, (T, 2)
    fast, lab = T.speed_perturb(tone, labels, 1.25)
    assert fast.shape[0] == 12800 and lab.shape == (n_frames(fast.shape[0]), 2) == (80, 2)
    freqs = np.fft.rfftfreq(fast.shape[0], 1.0 / rate)
    assert abs(freqs[np.argmax(np.abs(np.fft.rfft(fast)))] - 1250.0) < 2.0
    # frame i of the faster audio shows what frame (i + 0.5) * 1.25 showed
    assert lab[:, 0].tolist() == [int((i + 0.5) * 1.25) // 10 for i in range(80)] and (lab[:, 1] == lab[:, 0] + 100).all()
    slow, lab = T.speed_perturb(tone, labels[:, 0], 0.8)
    assert slow.shape[0] == 20000 and lab.shape == (125,) and lab[-1] == 9


def test_vocal_tract_warp_moves_the_bands():
    from face3d.animation.lipsync.features import RATE, log_mel, mel_filterbank, warped_filterbank

    assert np.array_equal(warped_filterbank(1.0), mel_filterbank())
    freqs = np.fft.rfftfreq(512, 1.0 / RATE)
    peak = lambda fb: freqs[np.argmax(fb[10])]
    assert peak(warped_filterbank(0.85)) < peak(mel_filterbank()) < peak(warped_filterbank(1.2))
    assert warped_filterbank(1.2).shape == mel_filterbank().shape and warped_filterbank(1.2)[:, freqs > 8000].sum() == 0
    tone = np.sin(2 * np.pi * 1000 * np.arange(RATE) / RATE).astype(np.float32)
    band = lambda w: int(np.argmax(log_mel(tone, normalize=False, warp=w).mean(0)))
    assert band(0.85) > band(1.0) > band(1.2)  # a fixed formant falls in a higher band of a compressed filterbank


@_needs("flite")
@_needs("pico2wave")
def test_phone_dataset_is_cached_per_utterance_and_trains_a_phone_reading_net(tmp_path):
    from face3d.animation.lipsync.classifier import PHONES

    recipe = T.RECIPES["phones"]
    texts = [TEXT, "She sells sea shells by the sea shore.", "The birch canoe slid on the smooth planks."]
    first = T.phone_dataset(texts, 0, recipe, cache=str(tmp_path), log=lambda *_: None)
    assert len(first) == 3 and len(list(tmp_path.glob("0-*.npz"))) == 3
    for audio, labels in first:
        assert labels.shape == (n_frames(audio.shape[0]), 2) and labels[:, 1].max() < len(PHONES)
        speech = labels[:, 0] != VISEME_INDEX["sil"]
        assert (labels[speech, 1] != 0).mean() > 0.6  # pocketsphinx hears phones where the voice speaks
    again = T.phone_dataset(texts, 0, recipe, cache=str(tmp_path), log=lambda *_: None)
    for (a, la), (b, lb) in zip(first, again):
        assert np.array_equal(a, b) and np.array_equal(la, lb)
    one = T.phone_utterance(texts[1], 1, 0, recipe)
    assert abs(one[1].shape[0] - first[1][1].shape[0]) <= 2  # each utterance from its own random stream
    net = T.train(first, replace(recipe, epochs=1, channels=8), batch=2, log=lambda *_: None)
    assert net.config["n_phones"] == len(PHONES)


@pytest.mark.parametrize("recipe", ["espeak", "voices", "phones"])
def test_training_command_writes_weights_with_its_recipe(tmp_path, recipe):
    import json

    from face3d.animation.lipsync.classifier import load_net

    if recipe != "espeak" and (shutil.which("flite") is None or shutil.which("pico2wave") is None):
        pytest.skip("flite/pico2wave not installed")
    out = tmp_path / "net.npz"
    T.main(["--recipe", recipe, "--limit", "3", "--epochs", "1", "-o", str(out), "--log", str(tmp_path / "log")])
    assert load_net(out).config["n_out"] == 15 and load_net(out).config["n_phones"] == (40 if recipe == "phones" else 0)
    with np.load(out) as z:
        meta = json.loads(str(z["meta"]))
    assert meta["recipe"] == recipe and meta["sentences"] == 3 and meta["repeats"] == T.RECIPES[recipe].repeats
    assert "wrote" in (tmp_path / "log").read_text() and (tmp_path / "net.npz.ckpt").exists()


def test_words_sweep_rejects_by_agreement_and_reuses_its_cache(tmp_path):
    """benchmarks/lipsync_voices.py --words-sweep: agreement 0 keeps every clip's words, an agreement
    above 1 rejects every clip (the log-mel classifier's track: > 0.85 on espeak-ng); a second run
    from the cache prints the same table."""
    from pathlib import Path

    from face3d.testing import load_script

    bench = load_script(Path(__file__).resolve().parents[1] / "benchmarks" / "lipsync_voices.py", "bench_lipsync_voices")
    grid = {"weight": [3.0], "bonus": [1.0], "agreement": [0.0, 1.01]}
    cache = tmp_path / "clips.pkl"
    out = bench.words_sweep(["espeak:"], [TEXT], grid, str(cache))
    rows = [[c.strip() for c in r.split("|")[1:-1]] for r in out.splitlines()[2:]]
    assert [r[2] for r in rows] == ["0.0", "1.01"] and [r[-1] for r in rows] == ["0 / 1", "1 / 1"]
    assert float(rows[1][3]) > 0.85
    assert cache.is_file() and bench.words_sweep(["espeak:"], [TEXT], grid, str(cache)) == out


def test_sweep_scores_averages_per_voice_then_over_voices():
    """benchmarks/lipsync_voices.sweep_scores: voice a has two clips (accuracy 1 and 0.5), voice b one
    (0): the mean over voices is (0.75 + 0) / 2; speech frames leave 'sil' out; closures pool."""
    from pathlib import Path

    from face3d.testing import load_script

    bench = load_script(Path(__file__).resolve().parents[1] / "benchmarks" / "lipsync_voices.py", "bench_lipsync_voices")
    sil, pp, aa = VISEME_INDEX["sil"], VISEME_INDEX["PP"], VISEME_INDEX["aa"]
    t1 = np.array([sil, pp, aa, aa])
    tracks = [("a", t1.copy(), t1), ("a", np.array([sil, pp, sil, sil]), t1), ("b", np.array([aa, aa, pp, pp]), t1)]
    acc, speech, cl = bench.sweep_scores(tracks)
    assert acc == pytest.approx((0.75 + 0.0) / 2)
    assert speech == pytest.approx(((1.0 + 1 / 3) / 2 + 0.0) / 2)
    assert cl.recall == pytest.approx(2 / 3)
