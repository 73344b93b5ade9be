"""Morphable models: one API (``MorphableModel``) over the embedded default (ICT-FaceKit-derived), basic, ICT-FaceKit, FLAME and BFM."""

from face3d.models.model import LandmarkEmbedding, ModelArrays, MorphableModel, axis_angle_to_matrix
from face3d.models.registry import available_models, load_model

__all__ = ["LandmarkEmbedding", "ModelArrays", "MorphableModel", "axis_angle_to_matrix", "available_models", "load_model"]
