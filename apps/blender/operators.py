"""Operators and the 3D-viewport sidebar panel (tab "face3d") of the add-on.

No ``from __future__ import annotations`` here: Blender reads the property annotations.
"""

import sys
import tempfile
from pathlib import Path
from typing import Any

import bpy
from bpy.props import FloatProperty, IntProperty, StringProperty
from bpy_extras.io_utils import ExportHelper, ImportHelper

from . import scene
from .animation_io import AnimationFileError, read_track

INSTALL_HINT = ("face3d is not importable from Blender's Python ({exe}). Install it there with:\n"
                "  \"{exe}\" -m pip install face3d\n"
                "or use 'face3d reconstruct photo.jpg -o out/' outside Blender and Import face3d result.")


def _head(context: Any) -> Any:
    obj = context.active_object
    if obj is None or obj.type != "MESH":
        return None
    return obj


class FACE3D_OT_import_result(bpy.types.Operator, ImportHelper):
    """Import a face3d GLB or a 'face3d reconstruct' output folder (mesh, textures, ARKit shape keys)"""

    bl_idname = "face3d.import_result"
    bl_label = "Import face3d result"
    bl_options = {"REGISTER", "UNDO"}
    filter_glob: StringProperty(default="*.glb;*.gltf;*.obj", options={"HIDDEN"})  # type: ignore[valid-type]

    def execute(self, context: Any) -> set[str]:
        path = Path(self.filepath)
        if not path.exists() and path.parent.is_dir():
            path = path.parent
        try:
            head = scene.import_result(path)
        except RuntimeError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        context.view_layer.objects.active = head
        head.select_set(True)
        n = len(head.data.shape_keys.key_blocks) - 1 if head.data.shape_keys else 0
        self.report({"INFO"}, f"imported '{head.name}' with {n} shape keys")
        return {"FINISHED"}


class FACE3D_OT_import_animation(bpy.types.Operator, ImportHelper):
    """Import a face3d JSON, Live Link Face CSV or GLB animation onto the active object's shape keys"""

    bl_idname = "face3d.import_animation"
    bl_label = "Import animation"
    bl_options = {"REGISTER", "UNDO"}
    filter_glob: StringProperty(default="*.json;*.csv;*.glb", options={"HIDDEN"})  # type: ignore[valid-type]
    start_frame: IntProperty(name="Start frame", default=1)  # type: ignore[valid-type]
    fallback_fps: FloatProperty(name="CSV fps if unknown", default=60.0, min=1.0)  # type: ignore[valid-type]

    def execute(self, context: Any) -> set[str]:
        head = _head(context)
        if head is None or head.data.shape_keys is None:
            self.report({"ERROR"}, "select a mesh with shape keys (Import face3d result first)")
            return {"CANCELLED"}
        try:
            track = read_track(self.filepath, self.fallback_fps)
            action, missing = scene.apply_track(head, track, self.start_frame, Path(self.filepath).stem)
        except (AnimationFileError, RuntimeError) as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        used = len(track.names) - len(missing)
        if used == 0:
            self.report({"ERROR"}, f"none of the {len(track.names)} animated names match a shape key of '{head.name}'")
            return {"CANCELLED"}
        self.report({"INFO"}, f"'{action.name}': {len(track.times)} samples at {track.fps:g} fps on {used} shape keys")
        return {"FINISHED"}


class FACE3D_OT_reconstruct(bpy.types.Operator, ImportHelper):
    """Reconstruct a face from a photo with the face3d SDK and import the result"""

    bl_idname = "face3d.reconstruct"
    bl_label = "Reconstruct from image"
    bl_options = {"REGISTER", "UNDO"}
    filter_glob: StringProperty(default="*.jpg;*.jpeg;*.png", options={"HIDDEN"})  # type: ignore[valid-type]
    model: StringProperty(name="Model", default="default")  # type: ignore[valid-type]

    def execute(self, context: Any) -> set[str]:
        try:
            import face3d
        except ImportError:
            self.report({"ERROR"}, INSTALL_HINT.format(exe=sys.executable))
            return {"CANCELLED"}
        out = Path(tempfile.mkdtemp(prefix="face3d_"))
        try:
            rec = face3d.reconstruct(self.filepath, model=self.model)
            rec.save(out)
            head = scene.import_result(out)
        except Exception as exc:
            self.report({"ERROR"}, f"{type(exc).__name__}: {exc}")
            return {"CANCELLED"}
        context.view_layer.objects.active = head
        self.report({"INFO"}, f"reconstructed into {out}")
        return {"FINISHED"}


class FACE3D_OT_export(bpy.types.Operator, ExportHelper):
    """Export the active face with Blender's glTF (.glb) or FBX exporter (shape keys and animation)"""

    bl_idname = "face3d.export"
    bl_label = "Export face (glTF/FBX)"
    filename_ext = ".glb"
    filter_glob: StringProperty(default="*.glb;*.fbx", options={"HIDDEN"})  # type: ignore[valid-type]

    def check(self, context: Any) -> bool:
        return False

    def execute(self, context: Any) -> set[str]:
        head = _head(context)
        if head is None:
            self.report({"ERROR"}, "select the face mesh to export")
            return {"CANCELLED"}
        try:
            path = scene.export_object(head, self.filepath)
        except RuntimeError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        self.report({"INFO"}, f"exported {path}")
        return {"FINISHED"}


class FACE3D_PT_panel(bpy.types.Panel):
    bl_label = "face3d"
    bl_idname = "FACE3D_PT_panel"
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "face3d"

    def draw(self, context: Any) -> None:
        col = self.layout.column(align=True)
        col.operator(FACE3D_OT_import_result.bl_idname, icon="IMPORT")
        col.operator(FACE3D_OT_import_animation.bl_idname, icon="ACTION")
        col.operator(FACE3D_OT_reconstruct.bl_idname, icon="OUTLINER_OB_CAMERA")
        col.operator(FACE3D_OT_export.bl_idname, icon="EXPORT")
        head = _head(context)
        if head is not None and head.data.shape_keys is not None:
            self.layout.label(text=f"{len(head.data.shape_keys.key_blocks) - 1} shape keys")


CLASSES = (FACE3D_OT_import_result, FACE3D_OT_import_animation, FACE3D_OT_reconstruct, FACE3D_OT_export,
           FACE3D_PT_panel)


def register() -> None:
    for cls in CLASSES:
        bpy.utils.register_class(cls)


def unregister() -> None:
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)
