"""MorphableModel's regions and landmark embeddings are buffers: ``.to()`` moves and casts them."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from face3d.errors import BadInputError, ShapeError
from face3d.models.model import LandmarkEmbedding, ModelArrays, MorphableModel
from face3d.models.registry import load_model


@pytest.fixture()
def basic() -> MorphableModel:
    return load_model("basic")


def test_to_float64_casts_embeddings_and_keeps_regions(basic):
    shape = torch.linspace(-1, 1, basic.n_shape)[None] * basic.id_std
    lm32 = basic.landmarks(basic(shape=shape), "ibug68")
    bary32 = basic.embeddings["ibug68"].bary.clone()
    tri = basic.embeddings["ibug68"].tri.clone()
    face = basic.regions["face"].clone()
    m = basic.to(torch.float64)
    e = m.embeddings["ibug68"]
    assert e.bary.dtype == torch.float64 and e.tri.dtype == torch.int64 and m.template.dtype == torch.float64
    torch.testing.assert_close(e.bary, bary32.double())
    assert torch.equal(e.tri, tri) and torch.equal(m.regions["face"], face) and m.regions["face"].dtype == torch.bool
    lm64 = m.landmarks(m(shape=shape.double()), "ibug68")
    assert lm64.dtype == torch.float64
    torch.testing.assert_close(lm64, lm32.double(), atol=1e-6, rtol=0)
    assert int(m.regions["face"].sum()) == int(face.sum()) > 100


def test_to_device_moves_embeddings_and_regions(basic):
    """The meta device stands in for CUDA (not on this machine): every buffer goes with the model."""
    names = dict(basic.named_buffers())
    assert "region__face" in names and "emb_tri__ibug68" in names and "emb_bary__mediapipe478" in names
    m = basic.to("meta")
    assert m.regions["face"].device.type == "meta"
    assert m.embeddings["mediapipe478"].tri.device.type == "meta" and m.embeddings["mediapipe478"].bary.device.type == "meta"
    assert m.embeddings["mediapipe478"].bary.shape == (478, 3)


def test_regions_and_embeddings_behave_as_dicts(basic, tmp_path):
    assert sorted(basic.embeddings) == ["ibug68", "mediapipe478"] and "face" in basic.regions
    assert len(basic.regions) == len(list(basic.regions.keys())) == len(dict(basic.regions.items()))
    basic.regions["chin"] = basic.regions["face"] & (basic.template[:, 1] < 0)
    assert "region__chin" in dict(basic.named_buffers())
    with pytest.raises(ShapeError, match="region 'bad'"):
        basic.regions["bad"] = np.ones(3, bool)
    with pytest.raises(BadInputError, match="without '.'"):
        basic.regions["a.b"] = basic.regions["face"]
    e = basic.embeddings.pop("mediapipe478")
    assert isinstance(e, LandmarkEmbedding) and "mediapipe478" not in basic.embeddings
    assert "emb_bary__mediapipe478" not in dict(basic.named_buffers())
    with pytest.raises(BadInputError, match="mediapipe478"):
        basic.landmarks(basic.template[None], "mediapipe478")
    basic.embeddings["again"] = (e.tri[:5], e.bary[:5])
    assert basic.landmarks(basic.template[None], "again").shape == (1, 5, 3)
    basic.regions = {"only": basic.regions["face"]}
    assert list(basic.regions) == ["only"]
    back = MorphableModel.from_npz(basic.to_npz(tmp_path / "m.npz"))  # the file format is unchanged
    assert list(back.regions) == ["only"] and sorted(back.embeddings) == ["again", "ibug68"]
    torch.testing.assert_close(back.embeddings["again"].bary, e.bary[:5])
    sub = basic.to(torch.float64).subset(basic.regions["only"])
    assert sub.regions["only"].all() and sub.n_vertices == int(basic.regions["only"].sum())


class _Jointed(MorphableModel):
    def forward(self, shape=None, expression=None, pose=None, jaw=None, **kwargs):  # noqa: ARG002
        return super().forward(shape, expression, pose)


def test_is_articulated(basic):
    assert not basic.is_articulated
    j = _Jointed(ModelArrays(basic.template, basic.faces))
    assert j.is_articulated
