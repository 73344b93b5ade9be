"""Generator of the embedded ``basic`` model (``python -m face3d.models.basic_build`` rewrites the asset).

Pipeline: ``shape`` (implicit mean head) -> ``mesh`` (radial grid, mouth slit + pocket, UVs)
-> ``regions``, ``identity`` (anthropometric modes), ``expressions`` (52 ARKit shapes),
``albedo``, ``landmarks`` (iBUG-68) -> ``build`` (MorphableModel, asset file).
"""

from face3d.models.basic_build.build import asset_path, build, build_model, load_mediapipe_embedding, write_asset

__all__ = ["asset_path", "build", "build_model", "load_mediapipe_embedding", "write_asset"]
