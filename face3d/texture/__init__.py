"""UV textures: unwrap photos into the model's UV layout, de-light, complete by symmetry."""

from face3d.texture.bake import BakeOptions, TextureResult, bake_texture, pull_push
from face3d.texture.maps import GeometryMaps, uv_position_normal_maps
from face3d.texture.symmetry import SymmetryMap, symmetry_map
from face3d.texture.uv_raster import UVRaster, rasterize_uv

__all__ = [
    "BakeOptions",
    "GeometryMaps",
    "SymmetryMap",
    "TextureResult",
    "UVRaster",
    "bake_texture",
    "pull_push",
    "rasterize_uv",
    "symmetry_map",
    "uv_position_normal_maps",
]
