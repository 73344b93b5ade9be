"""Every name the packages export resolves to a real object (no stale entries in ``__all__``)."""

from __future__ import annotations

import importlib

import pytest

import face3d
from face3d import renderers


@pytest.mark.parametrize("package", [face3d, renderers], ids=["face3d", "face3d.renderers"])
def test_every_exported_name_imports(package):
    assert package.__all__, package.__name__
    for name in package.__all__:
        value = getattr(package, name)
        assert value is not None, f"{package.__name__}.{name}"
    assert sorted(package.__all__) == sorted(set(package.__all__))


def test_face3d_exports_are_the_documented_api():
    assert callable(face3d.reconstruct) and callable(face3d.load_model) and callable(face3d.animate_audio)
    assert callable(face3d.track) and isinstance(face3d.__version__, str)
    assert face3d.errors.Face3DError.__module__ == "face3d.errors"
    assert issubclass(face3d.MorphableModel, importlib.import_module("torch").nn.Module)
    assert "render" not in face3d.__all__  # there is no face3d.render module; face3d.renderers.render_mesh renders
    with pytest.raises(AttributeError):
        face3d.render  # noqa: B018
