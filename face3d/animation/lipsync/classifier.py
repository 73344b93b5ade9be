"""Frame-level viseme classifier: log-mel frames -> the 15 visemes, then a Viterbi smoothing.

A small temporal convolutional network (dilated 1-D convolutions, receptive field ±17 frames,
i.e. ±170 ms) maps :func:`face3d.animation.lipsync.features.log_mel` frames (T, 40) to viseme
log-probabilities (T, 15). Its weights are trained by this project's own recipe
(:mod:`face3d.animation.lipsync.train`) on espeak-ng speech whose phoneme timings are known, and
shipped in ``assets/lipsync/viseme_net.npz``. Decoding (:func:`viterbi`) picks the best viseme
path under a fixed per-switch penalty, which removes one-frame flickers.
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
FPS = 100.0
SWITCH_PENALTY = 2.0  # log-probability cost of changing viseme between frames (chosen on the dev set)


class VisemeNet(nn.Module):
    """(B, T, N_MELS) log-mel frames -> (B, T, 15) viseme logits. Dilated residual TCN."""

    def __init__(self, channels: int = 96, dilations: tuple[int, ...] = (1, 2, 4, 8), n_in: int = N_MELS,
                 n_out: int = len(VISEMES)):
        super().__init__()
        self.config = {"channels": channels, "dilations": list(dilations), "n_in": n_in, "n_out": n_out}
        self.inp = nn.Conv1d(n_in, channels, 5, padding=2)
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
        net = VisemeNet(config["channels"], tuple(config["dilations"]), config["n_in"], config["n_out"])
        net.load_state_dict(state)
    except FileNotFoundError:
        raise ModelFileError(path, "viseme classifier weights not found (python -m face3d.animation.lipsync.train writes them)") from None
    except (KeyError, ValueError, OSError, RuntimeError, json.JSONDecodeError) as exc:
        raise ModelFileError(path, f"not a viseme classifier file ({exc})") from None
    return net.eval()


_cache: dict[str, VisemeNet] = {}


def default_net() -> VisemeNet:
    """The shipped classifier, loaded once."""
    if "net" not in _cache:
        _cache["net"] = load_net(ASSET)
    return _cache["net"]


def viseme_log_probs(audio: np.ndarray, net: VisemeNet | None = None) -> np.ndarray:
    """(T, 15) float32 log-probabilities of each viseme per 10 ms frame of mono 16 kHz ``audio``."""
    net = net or default_net()
    feats = log_mel(audio)
    if feats.shape[0] == 0:
        return np.zeros((0, len(VISEMES)), np.float32)
    with torch.no_grad():
        logits = net(torch.from_numpy(feats)[None])[0]
    return torch.log_softmax(logits, -1).numpy()


def viterbi(log_probs: np.ndarray, switch_penalty: float = SWITCH_PENALTY) -> np.ndarray:
    """(T,) int best state path through (T, K) frame log-probabilities when every change of state
    costs ``switch_penalty`` (uniform start, no other transition cost)."""
    lp = np.asarray(log_probs, np.float64)
    t, k = lp.shape
    if t == 0:
        return np.zeros(0, np.int64)
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
