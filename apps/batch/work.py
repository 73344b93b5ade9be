"""One item of a batch: run a work function into a temporary folder, then rename it into place.

A work function has the signature ``work(paths, out_dir, settings) -> WorkOutput``; it writes
its files into ``out_dir`` (a temporary folder) and returns timings (seconds per stage) and
quality metrics. :func:`reconstruct_work` is the real one (``face3d.reconstruct`` + ``save``);
tests pass small deterministic ones to exercise the engines.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from face3d.io.atomic import atomic_dir, write_text

from .manifest import Item
from .resume import MARKER


@dataclass
class WorkOutput:
    """What a work function reports: seconds per stage and quality metrics (floats)."""

    timings: dict[str, float] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)


WorkFn = Callable[[tuple[Path, ...], Path, Mapping[str, Any]], WorkOutput]


@dataclass
class ItemResult:
    """One row of the results table.

    ``status`` is ``ok``, ``failed`` or ``interrupted``; ``exit_code`` follows the CLI codes
    (0 ok, 1 internal error, 2 bad input, 3 missing optional dependency). ``seconds`` is the
    wall time of the item, ``timings`` the work function's seconds per stage.
    """

    key: str
    inputs: tuple[str, ...]
    person: str | None
    status: str
    fingerprint: str | None
    seconds: float = 0.0
    error_type: str | None = None
    error_message: str | None = None
    exit_code: int = 0
    timings: dict[str, float] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    resumed: bool = False

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["inputs"] = list(self.inputs)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "ItemResult":
        kw = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        kw["inputs"] = tuple(kw.get("inputs", ()))
        return cls(**kw)


def item_result(item: Item, status: str, fp: str | None, **kw: Any) -> ItemResult:
    """An :class:`ItemResult` for ``item`` (inputs as strings)."""
    return ItemResult(key=item.key, inputs=tuple(str(p) for p in item.paths), person=item.person,
                      status=status, fingerprint=fp, **kw)


def set_worker_threads(threads: int) -> None:
    """Limit BLAS/OpenMP/torch intra-op threads of this process to ``threads``."""
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(threads)
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(threads)


def run_item(item: Item, out_root: Path, settings: Mapping[str, Any], fp: str | None,
             work: WorkFn, threads: int) -> ItemResult:
    """Run ``work`` for ``item`` into ``out_root/item.key`` atomically; never raises ``Exception``.

    The folder (with ``batch.json``) appears only when the work succeeded; any error is
    returned as a ``failed`` result carrying its type, message and exit code.
    ``KeyboardInterrupt`` propagates and leaves no partial folder.
    """
    set_worker_threads(threads)
    t0 = time.perf_counter()
    try:
        with atomic_dir(Path(out_root) / item.key) as tmp:
            out = work(item.paths, tmp, settings)
            res = item_result(item, "ok", fp, seconds=time.perf_counter() - t0,
                              timings={k: float(v) for k, v in out.timings.items()},
                              metrics={k: float(v) for k, v in out.metrics.items()})
            record = {**res.to_dict(), "files": {f.relative_to(tmp).as_posix(): f.stat().st_size
                                                 for f in sorted(tmp.rglob("*")) if f.is_file()}}
            write_text(tmp / MARKER, json.dumps(record, indent=1, sort_keys=True))
        return res
    except Exception as exc:
        return item_result(item, "failed", fp, seconds=time.perf_counter() - t0,
                           error_type=type(exc).__name__, error_message=str(exc) or repr(exc),
                           exit_code=int(getattr(exc, "exit_code", 1)))


def check_reconstruct_settings(settings: Mapping[str, Any]) -> None:
    """Check :func:`reconstruct_work`'s settings (model, device, preset, fitting options) without
    running anything: BadInputError / ModelNotFoundError naming the bad one."""
    from face3d.models.registry import check_model
    from face3d.reconstruction import check_device, fit_options

    opts = dict(settings)
    if "device" in opts:
        check_device(opts.pop("device"))
    if "model" in opts:
        check_model(opts.pop("model"))
    for name in ("method", "faces", "landmarks", "fps", "progress"):
        opts.pop(name, None)
    fit_options(opts)


def reconstruct_work(paths: tuple[Path, ...], out_dir: Path, settings: Mapping[str, Any]) -> WorkOutput:
    """The real work: ``face3d.reconstruct`` + save, into ``out_dir``.

    One photo -> the files of ``Reconstruction.save`` (mesh.obj, mesh.glb, params.json, ...);
    several photos of one person (fitted jointly, one identity) -> ``photo_00/``, ``photo_01/``...
    and ``summary.json`` as ``face3d.result.write_many`` writes them. ``settings`` are keyword
    arguments of ``face3d.reconstruct`` (``model``, ``device``, fitting options).
    """
    import face3d
    from face3d.result import write_many

    t0 = time.perf_counter()
    source: Any = [str(p) for p in paths] if len(paths) > 1 else str(paths[0])
    out = face3d.reconstruct(source, **dict(settings))
    t1 = time.perf_counter()
    recs = out if isinstance(out, list) else [out]
    if isinstance(out, list):
        write_many(recs, out_dir, kind="photos")
    else:
        out.write_files(out_dir)
    timings = {str(k): float(v) for k, v in recs[0].timings.items()}
    timings["reconstruct"] = t1 - t0
    timings["save"] = time.perf_counter() - t1
    return WorkOutput(timings=timings, metrics=reconstruction_metrics(recs))


def reconstruction_metrics(recs: Sequence[Any]) -> dict[str, float]:
    """Quality metrics of the reconstructions of one item: landmark error (normalised by the
    outer-eye-corner distance; mean and max over photos) and the final loss of each stage."""
    errors = [float(r.landmark_error) for r in recs]
    metrics = {"landmark_error": sum(errors) / len(errors), "landmark_error_max": max(errors)}
    metrics.update({f"loss_{k}": float(v) for k, v in recs[0].losses.items()})
    return metrics
