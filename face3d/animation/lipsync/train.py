"""Training recipe of the shipped viseme classifier (``assets/lipsync/viseme_net.npz``).

    python -m face3d.animation.lipsync.train            # ~13 min on 2 CPU cores

Data made here, with known labels: English sentences from the docstrings of Python's standard
library (:func:`corpus`; none of them is a sentence of ``benchmarks/animation.py`` or of
``benchmarks/lipsync_dev.py``) are spoken by espeak-ng (:mod:`face3d.animation.lipsync.espeak`)
with a random en-US voice variant, speaking rate and pitch; each phoneme's audio position gives
the frame labels (the visemes of ``SpokenPhonemes.viseme_segments``, as the benchmark scores
them). Each utterance is augmented on the fly (gain, a random spectral tilt, a band limit as in
audio recorded at 8–11 kHz, additive noise at 15–45 dB SNR, random leading/trailing silence). The network (:class:`VisemeNet`) is trained with
frame-level cross-entropy and Adam (one-cycle schedule). The speech is synthetic, so the
classifier learns espeak-ng's voices: on the benchmark's espeak-ng sentences it is far ahead of
pocketsphinx's phone recognition, while on the real clips it agrees with a forced-aligned
reference about as well as pocketsphinx does (``benchmarks/README.md``, lip-sync section).
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import re
import sys
import time
import warnings

import numpy as np
import torch

from face3d.animation.lipsync.classifier import ASSET, VisemeNet, save_net
from face3d.animation.lipsync.evaluate import viseme_frames
from face3d.animation.lipsync.features import RATE, log_mel, n_frames

VARIANTS = ("", "m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8", "f1", "f2", "f3", "f4", "f5", "klatt", "klatt2", "klatt3",
            "klatt4", "klatt5", "klatt6", "Andy", "Annie", "Alex", "Alicia", "adam", "aunty", "belinda", "benjamin", "caleb",
            "david", "ed", "edward", "john", "linda", "max", "Michael", "Mike", "paul", "rob", "robert", "steph", "travis",
            "victor", "zac", "norbert", "shelby", "grandpa", "grandma", "Lee", "quincy")
_WORD = re.compile(r"[A-Za-z][a-z']*[,.;:]?")
_SKIP_MODULES = ("this", "antigravity", "idlelib", "tkinter", "turtle", "turtledemo")


def corpus() -> list[str]:
    """Sorted, de-duplicated sentences of 4–16 plain words from the standard library's docstrings."""
    sents: set[str] = set()
    names = sorted(m.name for m in pkgutil.iter_modules() if getattr(m.module_finder, "path", "").startswith(sys.base_prefix)
                   and not m.name.startswith("_") and m.name not in _SKIP_MODULES)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name in names:
            try:
                mod = importlib.import_module(name)
            except Exception:  # noqa: BLE001 - optional stdlib parts (curses, dbm.gnu, ...) may not import
                continue
            docs = [mod.__doc__]
            for attr in dir(mod):
                try:
                    docs.append(getattr(getattr(mod, attr), "__doc__", None))
                except Exception:  # noqa: BLE001 - lazy attributes may raise on access
                    continue
            for doc in docs:
                if not isinstance(doc, str):
                    continue
                for s in re.split(r"(?<=[.!?])\s+", re.sub(r"\s+", " ", doc).strip()):
                    words = s.split()
                    if 4 <= len(words) <= 16 and all(_WORD.fullmatch(w) for w in words):
                        sents.add(s)
    return sorted(sents)


def utterance(text: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """espeak-ng speech of ``text`` with a random voice -> (16 kHz audio (N,), viseme labels (T,))."""
    from face3d.animation.lipsync.espeak import synthesize
    from face3d.io.audio import _resample

    variant = VARIANTS[rng.integers(len(VARIANTS))]
    voice = "en-us" + (f"+{variant}" if variant else "")
    sp = synthesize(text, voice=voice, rate_wpm=int(rng.integers(130, 231)), pitch=int(rng.integers(25, 76)))
    audio = _resample(sp.audio, sp.rate, RATE).astype(np.float32)
    labels, starts, ends = sp.viseme_segments()
    return audio, viseme_frames(labels, starts, ends, n_frames(audio.shape[0]) / 100.0)


def augment(audio: np.ndarray, labels: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Random gain, spectral tilt (a smooth random EQ of ±6 dB), band limit (a third of the
    time: nothing above 3.4–5.5 kHz, as in audio recorded at 8–11 kHz), silence padding (whole
    frames, labelled 'sil'), and noise at 15–45 dB SNR."""
    spec = np.fft.rfft(audio)
    knots = rng.uniform(-6.0, 6.0, 6)
    eq = np.interp(np.linspace(0, 5, spec.shape[0]), np.arange(6), knots)
    gain = 10.0 ** (eq / 20.0)
    if rng.random() < 1.0 / 3.0:
        freqs = np.fft.rfftfreq(audio.shape[0], 1.0 / RATE)
        gain = gain * np.clip((rng.uniform(3400.0, 5500.0) - freqs) / 200.0 + 1.0, 0.0, 1.0)
    audio = np.fft.irfft(spec * gain, audio.shape[0]).astype(np.float32)
    lead, trail = rng.integers(0, 30), rng.integers(0, 30)
    audio = np.concatenate([np.zeros(lead * 160, np.float32), audio, np.zeros(trail * 160, np.float32)])
    labels = np.concatenate([np.zeros(lead, labels.dtype), labels, np.zeros(trail, labels.dtype)])
    power = float(np.mean(audio**2)) + 1e-12
    snr = rng.uniform(15.0, 45.0)
    audio = audio + rng.normal(0.0, np.sqrt(power / 10.0 ** (snr / 10.0)), audio.shape).astype(np.float32)
    audio *= 10.0 ** (rng.uniform(-20.0, 6.0) / 20.0)
    return np.clip(audio, -1.0, 1.0), labels


def dataset(texts: list[str], seed: int, log=print) -> list[tuple[np.ndarray, np.ndarray]]:
    """Speak every text once with a random voice: (audio, labels) pairs."""
    rng = np.random.default_rng(seed)
    out, t0 = [], time.time()
    for i, text in enumerate(texts):
        out.append(utterance(text, rng))
        if (i + 1) % 500 == 0:
            log(f"  spoke {i + 1}/{len(texts)} ({time.time() - t0:.0f} s)")
    return out


def train(data: list[tuple[np.ndarray, np.ndarray]], epochs: int = 10, seed: int = 0, batch: int = 16, crop: int = 400,
          lr: float = 2e-3, channels: int = 96, log=print) -> VisemeNet:
    """Train a :class:`VisemeNet` on (audio, labels) pairs, re-augmenting every epoch; returns it in eval mode."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed + 1)
    net = VisemeNet(channels=channels)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    steps = epochs * int(np.ceil(len(data) / batch))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.1)
    for epoch in range(epochs):
        t0, losses = time.time(), []
        net.train()
        order = rng.permutation(len(data))
        for b in range(0, len(order), batch):
            xs, ys = [], []
            for j in order[b : b + batch]:
                audio, labels = augment(*data[j], rng)
                feats = log_mel(audio)
                n = min(feats.shape[0], labels.shape[0])
                a = int(rng.integers(0, max(n - crop, 0) + 1))
                x, y = feats[a : a + crop], labels[a : a + crop]
                xs.append(np.pad(x, ((0, crop - x.shape[0]), (0, 0))))
                ys.append(np.pad(y, (0, crop - y.shape[0]), constant_values=-100))
            logits = net(torch.from_numpy(np.stack(xs)))
            loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), torch.from_numpy(np.stack(ys)).reshape(-1),
                                                     ignore_index=-100)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            losses.append(float(loss.detach()))
        log(f"epoch {epoch + 1}/{epochs}: loss {np.mean(losses):.3f} ({time.time() - t0:.0f} s)")
    return net.eval()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-o", "--out", default=str(ASSET))
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=2, help="voices per sentence")
    ap.add_argument("--limit", type=int, default=0, help="use only the first N sentences (0: all)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    torch.set_num_threads(max(torch.get_num_threads(), 1))
    texts = corpus()
    if args.limit:
        texts = texts[: args.limit]
    print(f"{len(texts)} sentences x {args.repeats} voices")
    data = dataset(texts * args.repeats, args.seed)
    hours = sum(a.shape[0] for a, _ in data) / RATE / 3600
    print(f"{hours:.2f} h of speech")
    net = train(data, epochs=args.epochs, seed=args.seed)
    meta = {"sentences": len(texts), "repeats": args.repeats, "epochs": args.epochs, "seed": args.seed, "hours": round(hours, 3),
            "python": sys.version.split()[0], "torch": torch.__version__}
    print("wrote", save_net(net, args.out, meta))


if __name__ == "__main__":
    main()
