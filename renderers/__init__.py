"""Differentiable rasterization (nvdiffrast-style primitives); no face3d import needed."""
