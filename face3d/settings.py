"""``reconstruct``'s options: which exist, their ranges, the memory they need, and the resolved
settings recorded in params.json."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from face3d.errors import BadInputError
from face3d.fitting.stages import FitConfig

if TYPE_CHECKING:
    from face3d.detail.sdf.optimize import SDFFitOptions


#: The options of ``reconstruct`` besides the FitConfig fields: (kind, low, high) as in
#: :data:`face3d.fitting.stages.SETTING_RANGES`. The texture and detail maps are capped at 4096²
#: (4096 peaks near 5 GB; 8192 went past 12 GB); max_side caps the decoded photo.
OPTION_RANGES: dict[str, tuple[str, float, float]] = {
    "texture": ("bool", 0, 1),
    "texture_resolution": ("int", 16, 4096),
    "detail": ("bool", 0, 1),
    "detail_resolution": ("int", 16, 4096),
    "max_side": ("int", 64, 8192),
    "sdf_iterations": ("int", 1, 100_000),
    "sdf_voxel": ("positive", 0.0, 0.05),
}


BYTES_PER_TEXEL = 255
"""Peak memory per texel of the texture and detail maps: measured with ``/usr/bin/time`` on
``face3d reconstruct`` of the demo photo (photometric off, detail on): 627 MB at 256², 874 MB at
1024², 1671 MB at 2048² (both steps ~250-255 bytes per added texel; the issue's 4096² run peaked at 4.9 GB)."""
BASE_BYTES = 650_000_000  # the rest of the pipeline (torch, MediaPipe, the model)


def available_memory() -> int | None:
    """Bytes of memory available to new allocations (Linux ``MemAvailable``), or None if unknown."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def check_texture_memory(rest: dict[str, Any], available: int | None = None) -> None:
    """BadInputError before any work when the texture/detail maps would not fit in this machine's memory."""
    if not rest.get("texture", True):
        return
    res = int(rest.get("texture_resolution", 1024))
    side = max(res, int(rest.get("detail_resolution", res))) if rest.get("detail", True) else res
    need = BASE_BYTES + BYTES_PER_TEXEL * side * side
    free = available_memory() if available is None else available
    if free is not None and need > free:
        fits = int(((free - BASE_BYTES) / BYTES_PER_TEXEL) ** 0.5) if free > BASE_BYTES else 0
        raise BadInputError(f"texture_resolution {res}: the texture and detail maps need about {need / 1e9:.1f} GB, and this "
                            f"machine has {free / 1e9:.1f} GB available; use {max(16, 1 << max(fits, 1).bit_length() - 1)} or less")


def fit_options(options: dict[str, Any], video: bool = False) -> tuple[FitConfig, dict[str, Any]]:
    """``reconstruct``'s keyword options split into the FitConfig (``preset`` + its fields) and the
    rest, every value checked (BadInputError naming the option, the value and the allowed range).
    ``video``: settings the options do not name take the video defaults (:func:`video_config`)."""
    from face3d.fitting.stages import check_setting

    names = {f.name for f in dataclasses.fields(FitConfig)}
    rest = {k: v for k, v in options.items() if k not in names and k != "preset"}
    unknown = sorted(set(rest) - set(OPTION_RANGES))
    if unknown:
        raise BadInputError(f"reconstruct: unknown option(s) {unknown}; fitting options are {sorted(names)}, "
                            f"others {sorted(OPTION_RANGES)}")
    for k, v in rest.items():
        check_setting(k, v, OPTION_RANGES[k])
    named = {k: v for k, v in options.items() if k in names}
    if video:
        from face3d.fitting.video import video_config

        return video_config(options.get("preset", "default"), **named), rest
    return FitConfig.preset(options.get("preset", "default"), **named), rest


def resolved_settings(options: dict[str, Any], cfg: FitConfig, rest: dict[str, Any], method: str) -> dict[str, Any]:
    """What a reconstruction ran with, for params.json: the preset, every FitConfig field as
    resolved (preset, video defaults and the caller's settings applied), the other options as
    given (JSON-representable ones; others by their repr) and the method."""
    import json

    def plain(v: object) -> object:
        try:
            json.dumps(v)
            return v
        except (TypeError, ValueError):
            return repr(v)

    return {"preset": options.get("preset", "default"), "fit": dataclasses.asdict(cfg),
            "options": {k: plain(v) for k, v in sorted(rest.items())}, "method": method}


@dataclass(frozen=True)
class Job:
    """What the stages of one ``reconstruct`` call read: the fit settings, the other options, the
    method, the SDF's device and the progress callback (stage, done, total)."""

    cfg: FitConfig
    rest: dict[str, Any]
    method: str
    sdf_device: str
    progress: Callable[[str, int, int], None] | None

    @property
    def texture_resolution(self) -> int:
        """Side of the texture map (default 1024)."""
        return int(self.rest.get("texture_resolution", 1024))

    @property
    def detail_resolution(self) -> int:
        """Side of the shading-detail maps (default: the texture's)."""
        return int(self.rest.get("detail_resolution", self.texture_resolution))

    @property
    def sdf(self) -> SDFFitOptions:
        """The SDF reconstructor's settings (its maps: detail_resolution, default 256)."""
        from face3d.detail.sdf.optimize import SDFFitOptions

        return SDFFitOptions(iterations=int(self.rest.get("sdf_iterations", SDFFitOptions.iterations)),
                             uv_resolution=int(self.rest.get("detail_resolution", 256)), voxel=float(self.rest.get("sdf_voxel", 1e-3)))

    def report(self, stage: str) -> None:
        """Tell the progress callback that ``stage`` is done."""
        if self.progress:
            self.progress(stage, 1, 1)
