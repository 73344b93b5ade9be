"""What the operators do, as plain functions over bpy data (Blender 4.2+).

* :func:`import_result`: a face3d GLB, or a ``face3d reconstruct`` output folder (``mesh.glb``,
  else ``mesh.obj``), with its albedo (and normal map when present) wired into the material;
  ARKit-named shape keys come from the GLB's morph targets (``extras.targetNames``).
* :func:`apply_track`: an animation track onto an object's shape keys as one action, the
  scene's frame rate set to the track's (``fps`` / ``fps_base`` so that 29.97 stays exact).
* :func:`export_object`: Blender's own glTF or FBX exporter with shape keys and animation.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import bpy

from .animation_io import Track

ALBEDO_NAMES = ("albedo.png", "texture.png", "mesh.png")
NORMAL_NAMES = ("normal.png", "normals.png", "normal_map.png")


def _imported(before: set[str]) -> list[Any]:
    return [o for o in bpy.context.scene.objects if o.name not in before]


def _pick_head(objects: list[Any]) -> Any:
    meshes = [o for o in objects if o.type == "MESH"]
    if not meshes:
        raise RuntimeError("the file contains no mesh")
    return max(meshes, key=lambda o: (o.data.shape_keys is not None, len(o.data.vertices)))


def import_result(path: str | Path) -> Any:
    """Import a face3d ``.glb``/``.gltf``/``.obj`` or output folder; returns the head mesh object."""
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
    before = {o.name for o in bpy.context.scene.objects}
    suffix = p.suffix.lower()
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
    return head


def _principled(mat: Any) -> Any:
    mat.use_nodes = True
    node = next((n for n in mat.node_tree.nodes if n.type == "BSDF_PRINCIPLED"), None)
    if node is None:
        node = mat.node_tree.nodes.new("ShaderNodeBsdfPrincipled")
        out = next((n for n in mat.node_tree.nodes if n.type == "OUTPUT_MATERIAL"), None)
        out = out or mat.node_tree.nodes.new("ShaderNodeOutputMaterial")
        mat.node_tree.links.new(node.outputs["BSDF"], out.inputs["Surface"])
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
        if mat is None or not mat.use_nodes:
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


def _fcurves(anim_data: Any) -> Any:
    """The F-curves of ``anim_data``'s action (slotted actions in 4.4+, legacy ``action.fcurves`` before)."""
    action = anim_data.action
    slot = getattr(anim_data, "action_slot", None)
    if slot is not None:
        from bpy_extras import anim_utils

        bag = anim_utils.action_get_channelbag_for_slot(action, slot)
        if bag is not None:
            return bag.fcurves
    return action.fcurves


def apply_track(obj: Any, track: Track, start: int = 1, name: str = "face3d_animation") -> tuple[Any, list[str]]:
    """Key ``track`` onto ``obj``'s shape keys as a new action; returns (action, names not found).

    Frame of sample i: ``start + round((t_i - t_0) * fps)``; interpolation is linear. The scene's
    frame rate and range are set to match.
    """
    keys = obj.data.shape_keys
    if keys is None:
        raise RuntimeError(f"object '{obj.name}' has no shape keys to animate")
    lookup = {kb.name.lower(): kb for kb in keys.key_blocks}
    scene = bpy.context.scene
    set_scene_fps(scene, track.fps)
    frames = [float(track.frame_of(i, start)) for i in range(len(track.times))]
    anim = keys.animation_data or keys.animation_data_create()
    anim.action = bpy.data.actions.new(name)
    missing = []
    for k, key_name in enumerate(track.names):
        kb = lookup.get(key_name.lower())
        if kb is None or kb == keys.reference_key:
            missing.append(key_name)
            continue
        kb.slider_min = min(kb.slider_min, min(row[k] for row in track.values))
        kb.slider_max = max(kb.slider_max, max(row[k] for row in track.values))
        kb.value = track.values[0][k]
        kb.keyframe_insert("value", frame=frames[0])
        fc = _fcurves(anim).find(f'key_blocks["{kb.name}"].value')
        pts = fc.keyframe_points
        pts.add(len(frames) - len(pts))
        co = [c for f, row in zip(frames, track.values) for c in (f, row[k])]
        pts.foreach_set("co", co)
        pts.foreach_set("interpolation", [bpy.types.Keyframe.bl_rna.properties["interpolation"]
                                          .enum_items["LINEAR"].value] * len(frames))
        fc.update()
    scene.frame_start = start
    scene.frame_end = int(frames[-1])
    return anim.action, missing


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
