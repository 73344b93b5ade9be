"""Landmark sets calibrated on labelled photos: where does an annotation convention put its points on our mesh?

:mod:`face3d.models.calibrate` asks MediaPipe where its 478 points lie on renders of a model. Here
the answers come from annotated photos instead: photos labelled in some convention (the 68 points of
a data set such as 300W-LP / AFLW2000-3D, a studio's own markers), each fitted by face3d. For every
labelled point j the set takes the model vertex whose projection in the fitted faces lies closest to
the label, on average over the photos, each distance divided by the size of that photo's labels
(sqrt(w · h) of their box, the normaliser of 3DDFA's NME). The result is one fixed surface point per
label, as the 3D convention of 300W-LP defines its 68 points (points on the far side of a turned face
included), and it reads on any fit of the model: ``rec.landmarks2d(name)`` once attached.

Why it matters: the 68 points a model carries are its makers' reading of the convention, and a
systematic offset from a data set's reading counts in every NME measured on that data set
(benchmarks/README.md, "Issue 24: the 68-point convention").

``python -m face3d.fitting.labelled_landmarks FOLDER -o FILE [--model default] [--name NAME]``
fits every photo of FOLDER that has a ``<stem>.lm68.txt`` (or ``--suffix``) label file beside it
and writes the set (:func:`save_labelled_set`); :func:`load_labelled_set` reads it back and
:meth:`LabelledLandmarkSet.attach` adds it to a model.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from face3d.errors import BadInputError, ModelFileError, ShapeError

if TYPE_CHECKING:
    from face3d.models.model import MorphableModel
    from face3d.result import FittedFace

#: Model region whose vertices may carry a calibrated point (its name in ``model.regions``; the whole
#: mesh when the model has no such region).
CANDIDATE_REGION = "face"
#: Label files beside each photo: ``<photo stem><LABEL_SUFFIX>`` (any format of
#: :func:`face3d.landmarks.files.load_landmarks_file`).
LABEL_SUFFIX = ".lm68.txt"
PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png")


@dataclass(frozen=True)
class LabelledLandmarkSet:
    """A landmark set calibrated on labelled photos.

    name: the set's name once attached to a model; vertices (L,) int64: the model vertex of each
    label; error (L,) float64: the mean distance between that vertex's projection and the label on
    the calibration photos, divided by each photo's label box size sqrt(w · h); photos: the
    calibration photos' names; model: the model's name; topology: its
    :func:`face3d.models.calibrate.topology_fingerprint`.
    """

    name: str
    vertices: np.ndarray
    error: np.ndarray
    photos: tuple[str, ...]
    model: str
    topology: str

    def embedding(self, model: MorphableModel) -> tuple[np.ndarray, np.ndarray]:
        """(tri (L,) int64, bary (L, 3) float32): per point one triangle of ``model`` that has the
        point's vertex as a corner, with weight 1 on that corner."""
        from face3d.models.calibrate import topology_fingerprint
        from face3d.models.model import vertex_embedding

        if topology_fingerprint(model) != self.topology:
            raise BadInputError(f"landmark set '{self.name}' was calibrated on model '{self.model}', whose mesh differs "
                                f"from model '{model.name}'s; calibrate it again on this model")
        return vertex_embedding(model.faces.numpy(), self.vertices)

    def attach(self, model: MorphableModel) -> MorphableModel:
        """Add the set to ``model`` under :attr:`name` (replacing a set of that name); returns the model."""
        model.set_embedding(self.name, *self.embedding(model))
        return model


def choose_vertices(projected: np.ndarray, labels: np.ndarray, candidates: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The vertex closest to each label on average over photos.

    projected (N, V, 2) px: the fitted model's vertices in each of N photos; labels (N, L, 2) px
    (NaN rows: a point not labelled in that photo); candidates (C,) vertex ids allowed (default
    all). Distances are divided by each photo's label box size sqrt(w · h). Returns (vertices (L,)
    int64, error (L,) the mean normalised distance of the chosen vertex)."""
    P, Lb = np.asarray(projected, np.float64), np.asarray(labels, np.float64)
    if P.ndim != 3 or P.shape[-1] != 2:
        raise ShapeError("projected", "(N, V, 2)", P.shape)
    if Lb.ndim != 3 or Lb.shape[-1] != 2 or Lb.shape[0] != P.shape[0]:
        raise ShapeError("labels", f"({P.shape[0]}, L, 2)", Lb.shape)
    cand = np.arange(P.shape[1]) if candidates is None else np.asarray(candidates, np.int64)
    if cand.size == 0:
        raise BadInputError("choose_vertices: no candidate vertices")
    size = np.sqrt(np.prod(np.nanmax(Lb, 1) - np.nanmin(Lb, 1), axis=1))  # (N,)
    if not np.all(np.isfinite(size) & (size > 0)):
        raise BadInputError("choose_vertices: every photo needs labels spanning a box of non-zero size")
    Pc = P[:, cand]  # (N, C, 2)
    out, err = np.zeros(Lb.shape[1], np.int64), np.zeros(Lb.shape[1])
    for j in range(Lb.shape[1]):
        seen = np.all(np.isfinite(Lb[:, j]), axis=1)
        if not seen.any():
            raise BadInputError(f"choose_vertices: label {j} is missing in every photo")
        d = np.linalg.norm(Pc[seen] - Lb[seen, j][:, None], axis=2) / size[seen, None]  # (n, C)
        mean = d.mean(0)
        k = int(np.argmin(mean))
        out[j], err[j] = cand[k], mean[k]
    return out, err


def calibrate_labelled_set(fits: Sequence[FittedFace], labels: Sequence[np.ndarray], name: str,
                           photos: Sequence[str] = (), region: str = CANDIDATE_REGION) -> LabelledLandmarkSet:
    """Calibrate a set on ``fits`` (fitted faces of one model) and their ``labels`` ((L, 2) px each,
    in the fit's image, NaN where unlabelled): :func:`choose_vertices` over the vertices of the
    model's ``region``. ``photos`` names the calibration photos (recorded in the set)."""
    from face3d.models.calibrate import topology_fingerprint

    if not fits or len(fits) != len(labels):
        raise BadInputError(f"calibrate_labelled_set: needs one label array per fit, got {len(fits)} fits and {len(labels)} label arrays")
    model = fits[0]._model()
    if any(f._model().n_vertices != model.n_vertices for f in fits):
        raise BadInputError("calibrate_labelled_set: every fit must be of the same model")
    projected = np.stack([f.project(f.vertices(posed=True)) for f in fits])
    mask = model.regions.get(region)
    candidates = np.flatnonzero(mask.numpy()) if mask is not None else None
    vertices, error = choose_vertices(projected, np.stack([np.asarray(lb, np.float64)[:, :2] for lb in labels]), candidates)
    return LabelledLandmarkSet(name=name, vertices=vertices, error=error, photos=tuple(photos), model=model.name,
                               topology=topology_fingerprint(model))


def save_labelled_set(path: str | Path, labelled: LabelledLandmarkSet) -> Path:
    """Write ``labelled`` atomically as an npz (vertices, error, photos, name, model, topology)."""
    from face3d.io.atomic import atomic_path

    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez_compressed(fh, vertices=labelled.vertices.astype(np.int64), error=labelled.error.astype(np.float64),
                            photos=np.array(labelled.photos, dtype=str), name=np.array(labelled.name),
                            model=np.array(labelled.model), topology=np.array(labelled.topology))
    return Path(path)


def load_labelled_set(path: str | Path) -> LabelledLandmarkSet:
    """Read a set written by :func:`save_labelled_set` (:class:`ModelFileError` naming the file otherwise)."""
    from face3d.io.npz import read_npz

    z = read_npz(path, "labelled landmark set")
    missing = [k for k in ("vertices", "error", "name", "model", "topology") if k not in z]
    if missing:
        raise ModelFileError(path, f"not a labelled landmark set (missing {', '.join(missing)})")
    v = z["vertices"].astype(np.int64)
    if v.ndim != 1 or z["error"].shape != v.shape:
        raise ModelFileError(path, f"vertices and error must be (L,) arrays, got {v.shape} and {z['error'].shape}")
    return LabelledLandmarkSet(name=str(z["name"]), vertices=v, error=z["error"].astype(np.float64),
                               photos=tuple(str(p) for p in z.get("photos", np.array([], dtype=str))),
                               model=str(z["model"]), topology=str(z["topology"]))


def labelled_photos(folder: str | Path, suffix: str = LABEL_SUFFIX, exclude: Sequence[str] = ()) -> list[tuple[Path, Path]]:
    """(photo, label file) pairs of ``folder``: each photo (:data:`PHOTO_SUFFIXES`) with a
    ``<stem><suffix>`` file beside it, by name, skipping names that match a glob of ``exclude``."""
    root = Path(folder)
    if not root.is_dir():
        raise BadInputError(f"{root}: not a folder")
    pairs = []
    for photo in sorted(p for p in root.iterdir() if p.suffix.lower() in PHOTO_SUFFIXES):
        label = photo.with_name(photo.stem + suffix)
        if label.is_file() and not any(photo.match(g) for g in exclude):
            pairs.append((photo, label))
    return pairs


def main(argv: list[str] | None = None) -> int:
    import face3d
    from face3d.errors import Face3DError
    from face3d.io.images import read_image
    from face3d.landmarks.files import load_landmarks_file
    from face3d.reconstruction import get_model

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder", help="photos with a label file beside each")
    ap.add_argument("-o", "--output", required=True, help="the set's .npz")
    ap.add_argument("--model", default="default")
    ap.add_argument("--name", default="ibug68_labelled", help="the set's name on the model")
    ap.add_argument("--suffix", default=LABEL_SUFFIX, help="label file of photo X.jpg: X<suffix>")
    ap.add_argument("--exclude", action="append", default=[], help="glob of photo names to skip (repeatable)")
    args = ap.parse_args(argv)
    model = get_model(args.model)
    fits, labels, names = [], [], []
    for photo, label in labelled_photos(args.folder, args.suffix, args.exclude):
        try:
            image = read_image(photo)
            rec = face3d.reconstruct(image, model=model, texture=False, detail=False)
            points = load_landmarks_file(label).points[:, :2] * image.scale  # labels are in the file's pixels
        except Face3DError as e:
            print(f"skipped {photo.name}: {e}", file=sys.stderr)
            continue
        fits.append(rec)
        labels.append(points)
        names.append(photo.name)
    if not fits:
        print(f"error: no labelled photo in {args.folder} could be fitted", file=sys.stderr)
        return 1
    labelled = calibrate_labelled_set(fits, labels, args.name, names)
    save_labelled_set(args.output, labelled)
    print(f"{args.output}: '{labelled.name}' on model '{labelled.model}', {len(labelled.vertices)} points from {len(names)} photos; "
          f"mean calibration error {100 * labelled.error.mean():.2f} % of the label box")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
