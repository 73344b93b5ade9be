"""Are the saved files the same as another checkout's? (issue 26: a faster save must write the same bytes)

    python benchmarks/save_same.py --against CHECKOUT [--photos 10] [--folder shared/data/faces]

This checkout reconstructs the first ``--photos`` photos of ``--folder`` that have a face (default
settings, the first face of each) once; the results (pickled, without the model) are then saved by
a child process running this checkout's code and by one running ``--against``'s (e.g. ``git worktree
add --detach /tmp/base main``), each with the PNG memo emptied before every save, and every file is
compared byte for byte. A mesh.glb that differs is read back: its geometry, normals, textures and
resting weights must be equal, and the differences of its morph targets are printed (largest
difference, largest where both files keep a value, components one file keeps and the other leaves
out below SPARSE_EPS). Exits 1 when any other file differs. Run it with ``OMP_NUM_THREADS=1``.
"""

from __future__ import annotations

import argparse
import os
import pickle
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import pickle, sys
from pathlib import Path
from face3d.io import imagefile
from face3d.models import load_model
recs = pickle.load(open(sys.argv[1], "rb"))
models = {}
for i, rec in enumerate(recs):
    rec.model = models.setdefault(rec.model_name, load_model(rec.model_name))
    imagefile._PNG_MEMO.clear()  # every photo's maps encoded anew, as in a batch
    rec.save(Path(sys.argv[2]) / str(i))
"""


def _reconstruct(folder: Path, n: int) -> tuple[list[str], list[object]]:
    import face3d
    from face3d.errors import Face3DError

    names, recs = [], []
    for p in sorted(folder.glob("*.jpg")):
        if len(recs) >= n:
            break
        try:
            out = face3d.reconstruct(str(p))
        except Face3DError as e:  # no face, too small: not a save to compare
            print(f"skipped {p.name}: {type(e).__name__}")
            continue
        rec = out[0] if isinstance(out, list) else out
        rec.model = None
        names.append(p.name)
        recs.append(rec)
    return names, recs


def _glb_difference(a: Path, b: Path) -> tuple[bool, str]:
    from face3d.io.mesh import load_mesh

    ma, mb = load_mesh(a), load_mesh(b)
    same = all(np.array_equal(getattr(ma, k), getattr(mb, k))
               for k in ("vertices", "faces", "uvs", "colors", "normals", "texture", "normal_map", "morph_weights", "morph_names"))
    if ma.morph_deltas is None or mb.morph_deltas is None or ma.morph_deltas.shape != mb.morph_deltas.shape:
        return False, "morph targets missing or of another shape"
    da, db = ma.morph_deltas, mb.morph_deltas
    d = np.abs(da - db)
    both = (da != 0) & (db != 0)
    changed = [ma.morph_names[k] for k in np.flatnonzero(d.max(axis=(1, 2)) > 0)] if ma.morph_names else []
    return same, (f"{len(changed)} targets differ{' (' + ', '.join(changed[:3]) + ', ...)' if changed else ''}; "
                  f"max |diff| {d.max():.3g} m, where both keep a value {d[both].max() if both.any() else 0:.3g} m; "
                  f"components kept by one file only: {int(((da != 0) != (db != 0)).sum())} of {d.size}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--against", type=Path, required=True, help="the other checkout (A); this one is B")
    ap.add_argument("--photos", type=int, default=10)
    ap.add_argument("--folder", type=Path, default=None, help="default: shared/data/faces")
    a = ap.parse_args()
    if a.folder is None:
        from face3d.testing import shared_data

        a.folder = shared_data() / "faces"
    tmp = Path(tempfile.mkdtemp(prefix="face3d-save-same-"))
    names, recs = _reconstruct(a.folder, a.photos)
    with open(tmp / "recs.pkl", "wb") as fh:
        pickle.dump(recs, fh)
    for tag, checkout in (("A", a.against.resolve()), ("B", ROOT)):
        env = dict(os.environ, PYTHONPATH=str(checkout))
        subprocess.run([sys.executable, "-c", CHILD, str(tmp / "recs.pkl"), str(tmp / tag)], env=env, check=True, cwd=checkout)
    bad = 0
    counts = {"identical": 0, "glb morph values only": 0}
    for i, name in enumerate(names):
        fa, fb = tmp / "A" / str(i), tmp / "B" / str(i)
        files = sorted(p.name for p in fa.iterdir())
        if files != sorted(p.name for p in fb.iterdir()):
            print(f"{name}: other files written: {files} / {sorted(p.name for p in fb.iterdir())}")
            bad += 1
            continue
        for f in files:
            if (fa / f).read_bytes() == (fb / f).read_bytes():
                counts["identical"] += 1
            elif f.endswith(".glb"):
                same, what = _glb_difference(fa / f, fb / f)
                print(f"{name} {f}: {'only the morph values differ' if same else 'DIFFERS beyond the morph values'}: {what}")
                counts["glb morph values only"] += same
                bad += not same
            else:
                print(f"{name} {f}: DIFFERS")
                bad += 1
    print(f"\n{len(names)} photos, files byte-identical: {counts['identical']}, mesh.glb differing in morph values only: "
          f"{counts['glb morph values only']}, other differences: {bad}  ({tmp})")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
