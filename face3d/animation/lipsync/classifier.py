"""Frame-level viseme classifier: log-mel frames -> the 15 visemes, then a Viterbi smoothing.

A small temporal convolutional network (dilated 1-D convolutions, receptive field ±17 frames,
i.e. ±170 ms) maps :func:`face3d.animation.lipsync.features.log_mel` frames (T, 40) to viseme
log-probabilities (T, 15). Its weights are trained by this project's own recipe
(:mod:`face3d.animation.lipsync.train`) on espeak-ng speech whose phoneme timings are known, and
shipped in ``assets/lipsync/viseme_net.npz``. A second net of the same shape also reads the phone
pocketsphinx recognised in each frame (``n_phones`` > 0, :data:`PHONES`), trained on several
synthesisers' voices (``train --recipe phones``, ``assets/lipsync/viseme_phone_net.npz``); the
'fused' recogniser runs it (and can mix in the first, :func:`face3d.animation.lipsync.timing.fused_log_probs`).
Decoding (:func:`viterbi`) picks the best viseme path under a fixed per-switch penalty, which
removes one-frame flickers, optionally with minimum run lengths.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from face3d.animation.lipsync.features import N_MELS, log_mel
from face3d.animation.lipsync.timing import VisemeSegment
from face3d.animation.lipsync.visemes import VISEMES
from face3d.errors import ModelFileError
from face3d.paths import assets_dir

ASSET = assets_dir() / "lipsync" / "viseme_net.npz"
PHONE_ASSET = assets_dir() / "lipsync" / "viseme_phone_net.npz"  # reads pocketsphinx's phones too (train --recipe phones)
FPS = 100.0
SWITCH_PENALTY = 2.0  # log-probability cost of changing viseme between frames (chosen on the dev set)


PHONES: tuple[str, ...] = ("SIL", "AA", "AE", "AH", "AO", "AW", "AY", "B", "CH", "D", "DH", "EH", "ER", "EY", "F", "G", "HH",
                           "IH", "IY", "JH", "K", "L", "M", "N", "NG", "OW", "OY", "P", "R", "S", "SH", "T", "TH", "UH", "UW",
                           "V", "W", "Y", "Z", "ZH")
"""pocketsphinx's phones (CMU set, 'SIL' first): the one-hot input of a net with ``n_phones`` > 0."""
PHONE_INDEX = {p: i for i, p in enumerate(PHONES)}


class VisemeNet(nn.Module):
    """(B, T, n_in + n_phones) frames -> (B, T, 15) viseme logits. Dilated residual TCN.

    Input per 10 ms frame: ``n_in`` log-mel bands, then (when ``n_phones`` > 0) the one-hot
    :data:`PHONES` index of the phone pocketsphinx recognised there (:func:`phone_onehot`; all
    zeros when no recognition was run: such nets are trained with that input dropped at times)."""

    def __init__(self, channels: int = 96, dilations: tuple[int, ...] = (1, 2, 4, 8), n_in: int = N_MELS,
                 n_out: int = len(VISEMES), n_phones: int = 0):
        super().__init__()
        self.config = {"channels": channels, "dilations": list(dilations), "n_in": n_in, "n_out": n_out, "n_phones": n_phones}
        self.inp = nn.Conv1d(n_in + n_phones, channels, 5, padding=2)
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.GELU(), nn.Conv1d(channels, channels, 3, padding=d, dilation=d), nn.GELU(),
                          nn.Conv1d(channels, channels, 1))
            for d in dilations
        )
        self.out = nn.Conv1d(channels, n_out, 1)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        h = self.inp(feats.transpose(1, 2))
        for block in self.blocks:
            h = h + block(h)
        return self.out(torch.nn.functional.gelu(h)).transpose(1, 2)


def save_net(net: VisemeNet, path: str | Path, meta: dict) -> Path:
    """Atomically write the weights (float32) and config/meta (JSON) of ``net`` to an npz."""
    import json

    from face3d.io.atomic import atomic_path

    arrays = {f"w:{k}": v.detach().cpu().numpy().astype(np.float32) for k, v in net.state_dict().items()}
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, config=np.array(json.dumps(net.config)), meta=np.array(json.dumps(meta)), **arrays)
    return Path(path)


def load_net(path: str | Path = ASSET) -> VisemeNet:
    """The classifier stored by :func:`save_net` (eval mode, CPU); ModelFileError if missing/corrupt."""
    import json

    try:
        with np.load(path, allow_pickle=False) as z:
            config = json.loads(str(z["config"]))
            state = {k[2:]: torch.from_numpy(z[k]) for k in z.files if k.startswith("w:")}
        net = VisemeNet(config["channels"], tuple(config["dilations"]), config["n_in"], config["n_out"], config.get("n_phones", 0))
        net.load_state_dict(state)
    except FileNotFoundError:
        raise ModelFileError(path, "viseme classifier weights not found (python -m face3d.animation.lipsync.train writes them)") from None
    except (KeyError, ValueError, OSError, RuntimeError, json.JSONDecodeError) as exc:
        raise ModelFileError(path, f"not a viseme classifier file ({exc})") from None
    return net.eval()


_cache: dict[str, VisemeNet] = {}


def default_net() -> VisemeNet:
    """The shipped classifier of log-mel frames (``train --recipe espeak``), loaded once."""
    if "net" not in _cache:
        _cache["net"] = load_net(ASSET)
    return _cache["net"]


def default_phone_net() -> VisemeNet:
    """The shipped classifier that also reads pocketsphinx's phones (``train --recipe phones``), loaded once."""
    if "phone_net" not in _cache:
        _cache["phone_net"] = load_net(PHONE_ASSET)
    return _cache["phone_net"]


def phone_onehot(phones: np.ndarray, n_phones: int = len(PHONES)) -> np.ndarray:
    """(T, n_phones) float32 one-hot rows of (T,) :data:`PHONES` indices; index -1: an all-zero row."""
    phones = np.asarray(phones, np.int64)
    out = np.zeros((phones.shape[0], n_phones), np.float32)
    ok = phones >= 0
    out[np.flatnonzero(ok), phones[ok]] = 1.0
    return out


def net_input(audio: np.ndarray, net: VisemeNet, phones: np.ndarray | None = None, warp: float = 1.0) -> np.ndarray:
    """(T, n_in + n_phones) input of ``net`` for mono 16 kHz ``audio``: log-mel frames and, for a net
    that reads phones, the one-hot of ``phones`` ((T,) :data:`PHONES` indices, padded/cut to T; None: zeros)."""
    feats = log_mel(audio, warp=warp)
    k = net.config.get("n_phones", 0)
    if not k:
        return feats
    t = feats.shape[0]
    idx = np.full(t, -1, np.int64) if phones is None else np.pad(np.asarray(phones, np.int64)[:t], (0, max(t - len(phones), 0)),
                                                                  constant_values=0)
    return np.concatenate([feats, phone_onehot(idx, k)], 1)


def viseme_log_probs(audio: np.ndarray, net: VisemeNet | None = None, phones: np.ndarray | None = None) -> np.ndarray:
    """(T, 15) float32 log-probabilities of each viseme per 10 ms frame of mono 16 kHz ``audio``;
    ``phones``: (T,) :data:`PHONES` indices recognised by pocketsphinx, for a net that reads them."""
    net = net or default_net()
    feats = net_input(audio, net, phones)
    if feats.shape[0] == 0:
        return np.zeros((0, len(VISEMES)), np.float32)
    with torch.no_grad():
        logits = net(torch.from_numpy(feats)[None])[0]
    return torch.log_softmax(logits, -1).numpy()


def viterbi(log_probs: np.ndarray, switch_penalty: float = SWITCH_PENALTY, min_frames: int | np.ndarray = 1) -> np.ndarray:
    """(T,) int best state path through (T, K) frame log-probabilities when every change of state
    costs ``switch_penalty`` (uniform start, no other transition cost) and a state, once entered,
    is kept at least ``min_frames`` frames (an int, or (K,) per state; the last run may be shorter)."""
    lp = np.asarray(log_probs, np.float64)
    t, k = lp.shape
    if t == 0:
        return np.zeros(0, np.int64)
    dmin = np.broadcast_to(np.asarray(min_frames, np.int64), (k,)).clip(1)
    d = int(dmin.max())
    if d == 1:
        return _viterbi_plain(lp, switch_penalty)
    # state (v, c): in v for min(c + 1, d) frames; a change of state leaves from c >= dmin[v] - 1
    can_exit = np.arange(d)[None, :] >= (dmin[:, None] - 1)
    score = np.full((k, d), -np.inf)
    score[:, 0] = lp[0]
    back = np.zeros((t, k, d), np.int64)  # flat index v * d + c of the previous state
    idx = np.arange(k)
    for i in range(1, t):
        ex = np.where(can_exit, score, -np.inf)
        exc = np.argmax(ex, 1)
        exit_score = ex[idx, exc]
        order = np.argsort(-exit_score, kind="stable")
        b1, b2 = order[0], order[1] if k > 1 else order[0]
        src = np.where(idx == b1, b2, b1)  # best other state to come from
        new = np.empty_like(score)
        new[:, 0] = exit_score[src] - switch_penalty
        back[i, :, 0] = src * d + exc[src]
        if d > 2:
            new[:, 1 : d - 1] = score[:, 0 : d - 2]
            back[i, :, 1 : d - 1] = idx[:, None] * d + np.arange(d - 2)[None]
        stay = score[:, d - 1] >= score[:, d - 2]
        new[:, d - 1] = np.maximum(score[:, d - 1], score[:, d - 2])
        back[i, :, d - 1] = idx * d + np.where(stay, d - 1, d - 2)
        score = new + lp[i][:, None]
    path = np.empty(t, np.int64)
    state = int(np.argmax(score))
    for i in range(t - 1, -1, -1):
        path[i] = state // d
        state = int(back[i].reshape(-1)[state]) if i else state
    return path


def _viterbi_plain(lp: np.ndarray, switch_penalty: float) -> np.ndarray:
    t, k = lp.shape
    back = np.zeros((t, k), np.int64)
    score = lp[0].copy()
    idx = np.arange(k)
    for i in range(1, t):
        best = int(np.argmax(score))
        switch = score[best] - switch_penalty
        stay = score >= switch
        back[i] = np.where(stay, idx, best)
        score = np.where(stay, score, switch) + lp[i]
    path = np.empty(t, np.int64)
    path[-1] = int(np.argmax(score))
    for i in range(t - 1, 0, -1):
        path[i - 1] = back[i, path[i]]
    return path


def segments(path: np.ndarray, fps: float = FPS) -> list[VisemeSegment]:
    """Runs of equal states in a (T,) viseme index path -> segments covering [0, T / fps)."""
    path = np.asarray(path)
    if path.size == 0:
        return []
    cuts = np.flatnonzero(np.diff(path) != 0) + 1
    starts = np.concatenate([[0], cuts])
    ends = np.concatenate([cuts, [path.size]])
    return [VisemeSegment(VISEMES[int(path[a])], a / fps, b / fps) for a, b in zip(starts, ends)]
