"""Animation: expression codes over time (``Animation``), lip sync from audio, video tracking,
retargeting between models, and export (GLB with morph targets, Live Link Face CSV, MP4 preview).

Modules: ``animation`` (the type), ``avatar`` (a model with fixed identity), ``retarget`` (ARKit ->
any expression basis; avatar -> avatar), ``lipsync`` (pocketsphinx phonemes -> Oculus visemes ->
ARKit, Cohen-Massaro coarticulation), ``tracking`` (MediaPipe landmarks -> ARKit + head pose),
``gltf`` (animated GLB), ``livelink`` (Live Link Face / ARKit CSV), ``preview`` (MP4).
Layering: animation uses ``face3d.io`` (atomic writes, npz, audio, video, the GLB writer), never
the other way round. Submodules are imported on use, so importing this package is cheap.
"""
