"""Operators, preferences, File > Import entries and the 3D-viewport sidebar panel (tab "face3d").

No ``from __future__ import annotations`` here: Blender reads the property annotations.
"""

import tempfile
from pathlib import Path
from typing import Any

import bpy
from bpy.props import FloatProperty, IntProperty, StringProperty
from bpy_extras.io_utils import ExportHelper, ImportHelper

from . import scene
from .animation_io import AnimationFileError, Track, read_track
from .external import Face3dProcessError, find_face3d, run_reconstruct

ADDON = __package__  # 'face3d_blender' (legacy add-on) or 'bl_ext.<repo>.face3d' (extension)


def _head(context: Any) -> Any:
    obj = context.active_object
    if obj is None or obj.type != "MESH":
        return None
    return obj


def _add_sound(op: Any, context: Any, track: Track | None) -> str:
    """Make the track's audio the scene's sound strip when its file exists (else remove the strip
    of an earlier animation); returns a note for the report."""
    if track is None:
        return ""
    if not track.audio:
        scene.clear_sound(context.scene)
        return ""
    path = track.audio_file()
    if path is None:
        scene.clear_sound(context.scene)
        op.report({"WARNING"}, f"audio '{track.audio}' not found next to {track.source}: no sound strip added")
        return ""
    if not bpy.app.build_options.audaspace:  # e.g. the bpy 4.2 module: no sound strips at all
        op.report({"WARNING"}, f"this Blender is built without audio support: no sound strip for '{path.name}'")
        return ""
    scene.set_sound(context.scene, path, context.scene.frame_start)
    return f", sound '{path.name}'"


class FACE3D_AP_preferences(bpy.types.AddonPreferences):
    bl_idname = ADDON

    face3d_executable: StringProperty(  # type: ignore[valid-type]
        name="face3d executable", subtype="FILE_PATH", default="",
        description="The 'face3d' command installed outside Blender (empty: the one on PATH)")
    model: StringProperty(name="Model", default="", description="Model for Reconstruct (empty: face3d's default)")  # type: ignore[valid-type]
    extra_args: StringProperty(  # type: ignore[valid-type]
        name="Extra arguments", default="",
        description="More 'face3d reconstruct' options, e.g. --texture-resolution 512 --set photometric_steps=60")

    def draw(self, context: Any) -> None:
        self.layout.prop(self, "face3d_executable")
        self.layout.prop(self, "model")
        self.layout.prop(self, "extra_args")
        found = find_face3d(self.face3d_executable.strip())
        self.layout.label(text=f"using {found}" if found else "face3d not found: install it outside Blender (pip install face3d)")


def preferences(context: Any) -> Any:
    return context.preferences.addons[ADDON].preferences


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
            head, track = scene.import_result(path)
        except RuntimeError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        context.view_layer.objects.active = head
        head.select_set(True)
        n = len(head.data.shape_keys.key_blocks) - 1 if head.data.shape_keys else 0
        anim = f", {len(track.times)} frames at {track.fps:g} fps" if track is not None else ""
        self.report({"INFO"}, f"imported '{head.name}' with {n} shape keys{anim}{_add_sound(self, context, track)}")
        return {"FINISHED"}


class FACE3D_OT_import_animation(bpy.types.Operator, ImportHelper):
    """Import a face3d JSON/NPZ, Live Link Face CSV or GLB animation onto the active object's shape keys"""

    bl_idname = "face3d.import_animation"
    bl_label = "Import face3d animation"
    bl_options = {"REGISTER", "UNDO"}
    filter_glob: StringProperty(default="*.json;*.npz;*.csv;*.glb", options={"HIDDEN"})  # type: ignore[valid-type]
    start_frame: IntProperty(name="Start frame", default=-1, description="Frame of the first sample (-1: the scene's start)")  # type: ignore[valid-type]
    fallback_fps: FloatProperty(name="CSV fps if unknown", default=60.0, min=1.0)  # type: ignore[valid-type]

    def execute(self, context: Any) -> set[str]:
        head = _head(context)
        if head is None or head.data.shape_keys is None:
            self.report({"ERROR"}, "select a mesh with shape keys (Import face3d result first)")
            return {"CANCELLED"}
        start = context.scene.frame_start if self.start_frame < 0 else self.start_frame
        try:
            track = read_track(self.filepath, self.fallback_fps)
            context.scene.frame_start = start
            action, missing = scene.apply_track(head, track, start, Path(self.filepath).stem)
        except (AnimationFileError, RuntimeError) as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        used = len(track.names) - len(missing)
        if used == 0:
            self.report({"ERROR"}, f"none of the {len(track.names)} animated names match a shape key of '{head.name}'")
            return {"CANCELLED"}
        sound = _add_sound(self, context, track)
        self.report({"INFO"}, f"'{action.name}': {len(track.times)} samples at {track.fps:g} fps on {used} shape keys{sound}")
        return {"FINISHED"}


class FACE3D_OT_reconstruct(bpy.types.Operator, ImportHelper):
    """Reconstruct a face from a photo with face3d (run as its own process) and import the result"""

    bl_idname = "face3d.reconstruct"
    bl_label = "Reconstruct from image"
    bl_options = {"REGISTER", "UNDO"}
    filter_glob: StringProperty(default="*.jpg;*.jpeg;*.png", options={"HIDDEN"})  # type: ignore[valid-type]

    def execute(self, context: Any) -> set[str]:
        prefs = preferences(context)
        out = Path(tempfile.mkdtemp(prefix="face3d_")) / Path(self.filepath).stem
        context.window_manager.progress_begin(0, 1)
        try:
            run_reconstruct(prefs.face3d_executable, self.filepath, out, prefs.model.strip(), prefs.extra_args)
            head, _ = scene.import_result(out)
        except (Face3dProcessError, RuntimeError) as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        finally:
            context.window_manager.progress_end()
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


def menu_import(self: Any, context: Any) -> None:
    self.layout.operator(FACE3D_OT_import_result.bl_idname, text="face3d result (.glb, folder)")
    self.layout.operator(FACE3D_OT_import_animation.bl_idname, text="face3d animation (.json, .npz, .csv, .glb)")


CLASSES = (FACE3D_AP_preferences, FACE3D_OT_import_result, FACE3D_OT_import_animation, FACE3D_OT_reconstruct,
           FACE3D_OT_export, FACE3D_PT_panel)


def register() -> None:
    for cls in CLASSES:
        bpy.utils.register_class(cls)
    bpy.types.TOPBAR_MT_file_import.append(menu_import)


def unregister() -> None:
    bpy.types.TOPBAR_MT_file_import.remove(menu_import)
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)
