"""Fine detail on top of a fitted mesh: shape-from-shading displacement and normal maps."""

from face3d.detail.sfs import DetailOptions, DetailResult, recover_detail, subdivide, tangent_space_normals

__all__ = ["DetailOptions", "DetailResult", "recover_detail", "subdivide", "tangent_space_normals"]
