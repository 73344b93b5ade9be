"""face3d for Blender: import reconstructions and animations, reconstruct from a photo, export.

Works as a Blender 4.2+ extension (``blender_manifest.toml``, module ``bl_ext.<repo>.face3d``) and
as a legacy add-on (``bl_info``, module ``face3d_blender``); only one of the two can be enabled:
``register()`` refuses when the other already registered the operators. Build the installable zip
with ``face3d blender-addon -o face3d_blender.zip``. face3d itself is never imported into Blender
(it runs as a separate process, :mod:`.external`). ``bpy`` is imported by ``register()`` so the
file-format readers (``animation_io``) also load outside Blender.
"""

bl_info = {
    "name": "face3d",
    "author": "face3d contributors",
    "version": (0, 1, 0),
    "blender": (4, 2, 0),
    "location": "File > Import, 3D Viewport > Sidebar > face3d",
    "description": "Import face3d reconstructions (ARKit shape keys) and animations; reconstruct from a photo",
    "category": "Import-Export",
}


def register() -> None:
    import bpy

    other = getattr(bpy.types, "FACE3D_PT_panel", None)
    owner = getattr(other, "__module__", "").rsplit(".", 1)[0]
    if other is not None and owner != __name__:
        raise RuntimeError(f"face3d is already enabled as '{owner}': disable it first (the legacy add-on "
                           f"'face3d_blender' and the extension 'face3d' cannot both be enabled)")
    from . import operators

    operators.register()


def unregister() -> None:
    from . import operators

    operators.unregister()
