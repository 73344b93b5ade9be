"""Animation: expression codes over time (``Animation``), lip sync from audio, video tracking,
retargeting between models, and export (GLB with morph targets, Live Link Face CSV, MP4 preview).

Modules: ``animation`` (the type), ``avatar`` (a model with fixed identity), ``retarget`` (ARKit ->
any expression basis; avatar -> avatar), ``lipsync`` (pocketsphinx phonemes -> Oculus visemes ->
ARKit, Cohen-Massaro coarticulation), ``tracking`` (MediaPipe landmarks -> ARKit + head pose).
Submodules are imported on use, so importing this package is cheap.
"""
