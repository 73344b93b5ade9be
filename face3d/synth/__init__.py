"""Synthetic faces with exact labels, and the landmark regressor trained on them.

``FaceSynthesizer(model).sample(rng)`` -> :class:`SynthSample`; ``write_shard`` writes N of them
to an ``.npz`` (``python -m face3d.synth.shards``); ``python -m face3d.synth.train`` trains the
landmark regressor (:mod:`face3d.landmarks.regressor`) on them. Names are imported lazily.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "FaceSynthesizer": "generator", "SynthConfig": "generator", "SynthSample": "generator", "render_model": "generator",
    "read_shard": "shards", "sample_rng": "shards", "write_shard": "shards", "make_synthesizer": "shards",
    "MixedBackgrounds": "sources", "ModelAlbedoSpace": "sources", "PhotoBackgrounds": "sources", "SmoothAlbedo": "sources",
    "TextureFolderAlbedo": "sources", "procedural_background": "sources", "BakedTextures": "sources", "MixedAlbedo": "sources",
    "UVAlbedo": "sources", "make_albedo": "shards", "RegionMixAlbedo": "sources",
}
__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(f"face3d.synth.{_LAZY[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'face3d.synth' has no attribute {name!r}")
