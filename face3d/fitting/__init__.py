"""3DMM fitting by analysis by synthesis: initialisation, losses, priors, stages, multi-view, video."""

from face3d.fitting.init import RigidInit, solve_pnp, umeyama
from face3d.fitting.multiview import fit_multiview
from face3d.fitting.stages import FitConfig, FitResult, FitTarget, fit
from face3d.fitting.video import fit_video

__all__ = ["FitConfig", "FitResult", "FitTarget", "RigidInit", "fit", "fit_multiview", "fit_video", "solve_pnp", "umeyama"]
