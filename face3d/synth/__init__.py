"""Synthetic faces with exact labels (training data for the landmark regressor).

``FaceSynthesizer(model).sample(rng)`` -> :class:`SynthSample`; ``write_shard`` writes N of them
to an ``.npz``; ``face3d.synth.regressor`` is the small CNN trained on them.
"""

from face3d.synth.generator import FaceSynthesizer, SynthConfig, SynthSample, render_model
from face3d.synth.shards import read_shard, sample_rng, write_shard
from face3d.synth.sources import MixedBackgrounds, ModelAlbedoSpace, PhotoBackgrounds, SmoothAlbedo, TextureFolderAlbedo, procedural_background

__all__ = ["FaceSynthesizer", "MixedBackgrounds", "ModelAlbedoSpace", "PhotoBackgrounds", "SmoothAlbedo", "SynthConfig", "SynthSample",
           "TextureFolderAlbedo", "procedural_background", "read_shard", "render_model", "sample_rng", "write_shard"]
