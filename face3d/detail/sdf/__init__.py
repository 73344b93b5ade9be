"""Implicit-SDF detail reconstructor (issue 7): base SDF of the 3DMM fit + learned residual."""

from face3d.detail.sdf.optimize import SDFFitOptions
from face3d.detail.sdf.pipeline import SDFResult, reconstruct_sdf
from face3d.detail.sdf.views import View

__all__ = ["SDFFitOptions", "SDFResult", "View", "reconstruct_sdf"]
