"""Thin application shells over the face3d SDK: the CLI, batch engines, the Blender add-on."""
