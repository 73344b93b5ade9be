"""What the operators do, as plain functions over bpy data (Blender 4.2+).

* :func:`import_result`: a face3d GLB, or a ``face3d reconstruct`` output folder (``mesh.glb``,
  else ``mesh.obj``), with its albedo (and normal map when present) wired into the material;
  ARKit-named shape keys come from the GLB's morph targets (``extras.targetNames``). An animated
  GLB sets the scene's frame rate and range and its weights are keyed as by :func:`apply_track`.
* :func:`apply_track`: an animation track onto an object's shape keys as one action that replaces
  the previous one, sample 0 on the scene's first frame, the scene's frame rate (``fps`` /
  ``fps_base`` so that 29.97 stays exact) and range set to the track's.
* :func:`set_sound`: the animation's audio as the scene's sound strip, on the same first frame.
* :func:`export_object`: Blender's own glTF or FBX exporter with shape keys and animation.

Blender 4.4 introduced layered actions (F-curves in a channel bag per slot); 4.2/4.3 keep them on
the action. :data:`LAYERED` picks the API once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import bpy

from .animation_io import AnimationFileError, Track, read_glb_weights

ALBEDO_NAMES = ("albedo.png", "texture.png", "mesh.png")
NORMAL_NAMES = ("normal.png", "normals.png", "normal_map.png")
FITTED_EXPRESSION = "fittedExpression"  # face3d.result.FITTED_EXPRESSION: the photo's expression, rests at 1
SOUND_STRIP = "face3d_audio"
LAYERED = bpy.app.version >= (4, 4, 0)


def _imported(before: set[str]) -> list[Any]:
    return [o for o in bpy.context.scene.objects if o.name not in before]


def _pick_head(objects: list[Any]) -> Any:
    meshes = [o for o in objects if o.type == "MESH"]
    if not meshes:
        raise RuntimeError("the file contains no mesh")
    return max(meshes, key=lambda o: (o.data.shape_keys is not None, len(o.data.vertices)))


def _glb_track(path: Path) -> Track | None:
    """The morph-weight animation of a GLB, or None when it has none."""
    try:
        track = read_glb_weights(path)
    except AnimationFileError:
        return None
    track.source = str(path)
    return track


def import_result(path: str | Path) -> tuple[Any, Track | None]:
    """Import a face3d ``.glb``/``.gltf``/``.obj`` or output folder; returns (head mesh object,
    the GLB's weight animation or None). An animation is re-keyed with :func:`apply_track`."""
    p = Path(path)
    folder = p if p.is_dir() else p.parent
    if p.is_dir():
        for name in ("mesh.glb", "mesh.gltf", "mesh.obj"):
            if (p / name).is_file():
                p = p / name
                break
        else:
            raise RuntimeError(f"{path}: no mesh.glb, mesh.gltf or mesh.obj in this folder")
    if not p.is_file():
        raise RuntimeError(f"{p}: file not found")
    scene = bpy.context.scene
    before = {o.name for o in scene.objects}
    suffix = p.suffix.lower()
    track = _glb_track(p) if suffix == ".glb" else None
    if track is not None:
        set_scene_fps(scene, track.fps)  # before importing: the importer converts seconds to frames at the scene rate
    if suffix in (".glb", ".gltf"):
        bpy.ops.import_scene.gltf(filepath=str(p))
    elif suffix == ".obj":
        bpy.ops.wm.obj_import(filepath=str(p), forward_axis="NEGATIVE_Z", up_axis="Y")
    else:
        raise RuntimeError(f"{p}: unsupported file type '{p.suffix}' (use .glb, .gltf, .obj or a folder)")
    head = _pick_head(_imported(before))
    albedo = next((folder / n for n in ALBEDO_NAMES if (folder / n).is_file()), None)
    normal = next((folder / n for n in NORMAL_NAMES if (folder / n).is_file()), None)
    ensure_material(head, albedo, normal)
    if track is not None:
        _align_object_action(head, scene.frame_start)
        apply_track(head, track, scene.frame_start, p.stem)
    return head, track


def _node_tree(mat: Any) -> Any:
    """The material's node tree (Blender 5.0 materials always have one; 4.x needs ``use_nodes``)."""
    if mat.node_tree is None:
        mat.use_nodes = True
    return mat.node_tree


def _principled(mat: Any) -> Any:
    tree = _node_tree(mat)
    node = next((n for n in tree.nodes if n.type == "BSDF_PRINCIPLED"), None)
    if node is None:
        node = tree.nodes.new("ShaderNodeBsdfPrincipled")
        out = next((n for n in tree.nodes if n.type == "OUTPUT_MATERIAL"), None)
        out = out or tree.nodes.new("ShaderNodeOutputMaterial")
        tree.links.new(node.outputs["BSDF"], out.inputs["Surface"])
    return node


def ensure_material(obj: Any, albedo: Path | None, normal: Path | None) -> Any:
    """Give ``obj`` a principled material; link ``albedo``/``normal`` files where nothing is linked yet."""
    if not obj.data.materials:
        obj.data.materials.append(bpy.data.materials.new(f"{obj.name}_face3d"))
    mat = obj.data.materials[0]
    bsdf = _principled(mat)
    nodes, links = mat.node_tree.nodes, mat.node_tree.links
    if albedo is not None and not bsdf.inputs["Base Color"].is_linked:
        tex = nodes.new("ShaderNodeTexImage")
        tex.image = bpy.data.images.load(str(albedo), check_existing=True)
        links.new(tex.outputs["Color"], bsdf.inputs["Base Color"])
    if normal is not None and not bsdf.inputs["Normal"].is_linked:
        tex = nodes.new("ShaderNodeTexImage")
        tex.image = bpy.data.images.load(str(normal), check_existing=True)
        tex.image.colorspace_settings.name = "Non-Color"
        nmap = nodes.new("ShaderNodeNormalMap")
        links.new(tex.outputs["Color"], nmap.inputs["Color"])
        links.new(nmap.outputs["Normal"], bsdf.inputs["Normal"])
    return mat


def material_images(obj: Any) -> dict[str, Any]:
    """The images feeding ``Base Color`` and (through a Normal Map node) ``Normal`` of ``obj``'s material."""
    found: dict[str, Any] = {}
    for mat in obj.data.materials:
        if mat is None or mat.node_tree is None:
            continue
        for link in mat.node_tree.links:
            src, dst = link.from_node, link.to_socket
            if dst.name == "Base Color" and src.type == "TEX_IMAGE":
                found["albedo"] = src.image
            if dst.name == "Color" and link.to_node.type == "NORMAL_MAP" and src.type == "TEX_IMAGE":
                found["normal"] = src.image
    return found


def set_scene_fps(scene: Any, fps: float) -> None:
    """Set ``scene.render.fps``/``fps_base`` so that ``fps / fps_base == fps`` (29.97 -> 30 / 1.001)."""
    whole = max(1, round(fps))
    scene.render.fps = whole
    scene.render.fps_base = whole / fps


def _fcurves(anim_data: Any, id_type: str) -> Any:
    """The F-curve collection of ``anim_data``'s action (its slot's channel bag from Blender 4.4 on)."""
    action = anim_data.action
    if not LAYERED:  # Blender 4.2/4.3: F-curves live on the action
        return action.fcurves
    if anim_data.action_slot is None:
        anim_data.action_slot = action.slots.new(id_type=id_type, name=anim_data.id_data.name)
    layer = action.layers[0] if len(action.layers) else action.layers.new("Layer")
    strip = layer.strips[0] if len(layer.strips) else layer.strips.new(type="KEYFRAME")
    return strip.channelbag(anim_data.action_slot, ensure=True).fcurves


def _align_object_action(obj: Any, start: int) -> None:
    """Shift the object's imported action (head pose) so its first key is on ``start``; drop NLA strips."""
    anim = obj.animation_data
    if anim is None:
        return
    for track in list(anim.nla_tracks):
        anim.nla_tracks.remove(track)
    if anim.action is None:
        return
    curves = list(_fcurves(anim, "OBJECT"))
    keyed = [fc.keyframe_points[0].co[0] for fc in curves if len(fc.keyframe_points)]
    if not keyed:
        return
    shift = start - min(keyed)
    for fc in curves:
        for kp in fc.keyframe_points:
            kp.co[0] += shift
            kp.handle_left[0] += shift
            kp.handle_right[0] += shift
        fc.update()


def _new_action(keys: Any, name: str) -> Any:
    """A new, empty action on the shape keys, replacing the previous action and any NLA tracks."""
    anim = keys.animation_data or keys.animation_data_create()
    old = anim.action
    for track in list(anim.nla_tracks):
        anim.nla_tracks.remove(track)
    anim.action = None
    if old is not None and old.users == 0:
        bpy.data.actions.remove(old)
    anim.action = bpy.data.actions.new(name)
    return anim


def apply_track(obj: Any, track: Track, start: int | None = None, name: str = "face3d_animation") -> tuple[Any, list[str]]:
    """Key ``track`` onto ``obj``'s shape keys as a new action replacing the previous one; returns
    (action, names not found).

    Frame of sample i: ``start + round((t_i - t_0) * fps)`` (``start`` default: the scene's first
    frame); interpolation is linear. The scene's frame rate and range are set to match, and the
    :data:`FITTED_EXPRESSION` key (the photo's expression) is set to 0 unless the track animates it.
    """
    keys = obj.data.shape_keys
    if keys is None:
        raise RuntimeError(f"object '{obj.name}' has no shape keys to animate")
    lookup = {kb.name.lower(): kb for kb in keys.key_blocks}
    scene = bpy.context.scene
    start = scene.frame_start if start is None else start
    set_scene_fps(scene, track.fps)
    frames = [float(track.frame_of(i, start)) for i in range(len(track.times))]
    anim = _new_action(keys, name)
    fcurves = _fcurves(anim, "KEY")
    linear = bpy.types.Keyframe.bl_rna.properties["interpolation"].enum_items["LINEAR"].value
    missing = []
    for k, key_name in enumerate(track.names):
        kb = lookup.get(key_name.lower())
        if kb is None or kb == keys.reference_key:
            missing.append(key_name)
            continue
        column = [row[k] for row in track.values]
        kb.slider_min = min(kb.slider_min, min(column))
        kb.slider_max = max(kb.slider_max, max(column))
        fc = fcurves.new(f'key_blocks["{kb.name}"].value')
        fc.keyframe_points.add(len(frames))
        fc.keyframe_points.foreach_set("co", [c for f, v in zip(frames, column) for c in (f, v)])
        fc.keyframe_points.foreach_set("interpolation", [linear] * len(frames))
        fc.update()
        kb.value = column[0]
    fitted = lookup.get(FITTED_EXPRESSION.lower())
    if fitted is not None and FITTED_EXPRESSION.lower() not in {n.lower() for n in track.names}:
        fitted.value = 0.0
    scene.frame_start = start
    scene.frame_end = max(start, int(frames[-1]))
    return anim.action, missing


def _strips(scene: Any) -> Any:
    editor = scene.sequence_editor or scene.sequence_editor_create()
    return editor.strips if hasattr(editor, "strips") else editor.sequences  # 'strips' since Blender 4.4


def clear_sound(scene: Any) -> None:
    """Remove the face3d sound strip, if any."""
    strips = _strips(scene)
    old = strips.get(SOUND_STRIP)
    if old is not None:
        strips.remove(old)


def set_sound(scene: Any, path: Path, frame: int) -> Any:
    """Make ``path`` the scene's face3d sound strip (replacing a previous one), starting at ``frame``."""
    clear_sound(scene)
    strip = _strips(scene).new_sound(SOUND_STRIP, str(path), 1, frame)
    scene.sync_mode = "AUDIO_SYNC"
    return strip


def export_object(obj: Any, path: str | Path) -> Path:
    """Export ``obj`` (shape keys, animation, material) with Blender's glTF (``.glb``) or FBX exporter."""
    p = Path(path)
    bpy.ops.object.select_all(action="DESELECT")
    obj.select_set(True)
    bpy.context.view_layer.objects.active = obj
    suffix = p.suffix.lower()
    if suffix in (".glb", ".gltf"):
        bpy.ops.export_scene.gltf(filepath=str(p), export_format="GLB" if suffix == ".glb" else "GLTF_SEPARATE",
                                  use_selection=True, export_morph=True, export_animations=True)
    elif suffix == ".fbx":
        bpy.ops.export_scene.fbx(filepath=str(p), use_selection=True, bake_anim=True, path_mode="COPY",
                                 embed_textures=True)
    else:
        raise RuntimeError(f"{p}: export to .glb, .gltf or .fbx")
    return p
