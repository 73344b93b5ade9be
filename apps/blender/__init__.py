"""face3d for Blender: import reconstructions and animations, reconstruct from a photo, export.

Works as a Blender 4.2+ extension (``blender_manifest.toml``) and as a legacy add-on
(``bl_info``). Build the installable zip with ``face3d blender-addon -o face3d_blender.zip``.
Nothing here imports face3d at module level: the SDK is optional inside Blender.
``bpy`` is imported by ``register()`` so the file-format readers (``animation_io``) also load
outside Blender.
"""

bl_info = {
    "name": "face3d",
    "author": "face3d contributors",
    "version": (0, 1, 0),
    "blender": (4, 2, 0),
    "location": "3D Viewport > Sidebar > face3d",
    "description": "Import face3d reconstructions (ARKit shape keys) and animations; reconstruct from a photo",
    "category": "Import-Export",
}


def register() -> None:
    from . import operators

    operators.register()


def unregister() -> None:
    from . import operators

    operators.unregister()
