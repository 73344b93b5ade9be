"""Batch-reconstruct a folder of photos on Ray (a private local Ray, or a cluster's address).

    python examples/batch_ray.py photos/ -o out/batch                    # local Ray, 2 workers
    python examples/batch_ray.py photos/ -o out/batch --address auto     # a running Ray cluster
    python examples/batch_ray.py -o out/batch                            # two views of the astronaut

What ``face3d batch photos/ -o OUT --engine ray`` runs (``apps.batch.run_batch``); needs
``pip install "face3d[dist]"``. Writes one folder per photo, ``results.csv`` and
``summary.json``, and prints a line per photo.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def demo_folder(folder: Path) -> Path:
    """Write scikit-image's astronaut and its mirror image into ``folder`` (two JPEGs)."""
    from PIL import Image, ImageOps
    from skimage import data

    folder.mkdir(parents=True, exist_ok=True)
    photo = Image.fromarray(data.astronaut())
    photo.save(folder / "astronaut.jpg", quality=92)
    ImageOps.mirror(photo).save(folder / "mirrored.jpg", quality=92)
    return folder


def main(argv: list[str] | None = None) -> object:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("photos", nargs="?", type=Path, help="a folder, glob, image or CSV/JSONL manifest")
    ap.add_argument("-o", "--out", type=Path, default=Path("out/batch"))
    ap.add_argument("--address", help="Ray cluster address (default: start a private local Ray)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--model", default="default")
    ap.add_argument("--texture-resolution", type=int, default=1024)
    args = ap.parse_args(argv)

    from face3d.apps.batch import run_batch

    source = args.photos or demo_folder(args.out.parent / (args.out.name + "_photos"))
    settings = {"model": args.model, "device": "cpu", "texture_resolution": args.texture_resolution}
    report = run_batch(source, args.out, workers=args.workers, engine="ray", address=args.address, settings=settings)
    for r in report.results:
        err = r.metrics.get("landmark_error")
        print(f"{r.key}: {r.status}" + (f", landmark error {err:.1%}" if err is not None else f" ({r.error_message})"))
    print(f"{report.summary['images_per_minute']:.1f} images/min; wrote {args.out}/results.csv")
    return report


if __name__ == "__main__":
    main()
