"""``face3d serve``: a resident worker that answers ``reconstruct``/``animate`` warm (``apps.serve``)."""

from __future__ import annotations

import time
from typing import Annotated, Optional

import typer

EPILOG = (
    "The CLI starts a worker by itself after an in-process `face3d reconstruct` or `face3d animate` (it stays "
    "FACE3D_SERVE_IDLE seconds, default 600, and holds 0.7-1.0 GB); later runs of those commands go to it. "
    "FACE3D_SERVE=0 turns this off.\n\n"
    "Examples:\n\n"
    "  face3d serve --idle-timeout 3600     (foreground; Ctrl-C stops it)\n\n"
    "  face3d serve --status\n\n"
    "  face3d serve --stop"
)


def serve_cmd(
    idle_timeout: Annotated[Optional[float], typer.Option("--idle-timeout", metavar="SECONDS",
                                                          help="Exit after this long without a request (0: never). "
                                                               "Default: FACE3D_SERVE_IDLE, else 600.")] = None,
    stop: Annotated[bool, typer.Option("--stop", help="Stop this user's workers (every face3d version in this cache folder).")] = False,
    status: Annotated[bool, typer.Option("--status", help="List this user's workers; exit 0 when a compatible one is serving.")] = False,
    no_warm_up: Annotated[bool, typer.Option("--no-warm-up", help="Serve at once; the first request warms up.")] = False,
) -> None:
    """Keep torch, the default model, MediaPipe and the numba kernels warm for the next commands."""
    from face3d.errors import BadInputError

    from .. import serve

    if stop and status:
        raise BadInputError("--stop and --status exclude each other")
    if status:
        raise typer.Exit(_print_status(serve))
    if stop:
        for line in serve.stop_all():
            typer.echo(line)
        return
    if idle_timeout is not None and idle_timeout < 0:
        raise BadInputError(f"--idle-timeout must be >= 0 seconds, got {idle_timeout:g}")
    raise typer.Exit(serve.serve_forever(serve.idle_timeout_setting() if idle_timeout is None else idle_timeout,
                                         warm=not no_warm_up))


def _print_status(serve) -> int:  # type: ignore[no-untyped-def]
    key = serve.worker_key()
    found = 0
    for path, info in serve.workers():
        if info is None:
            typer.echo(f"{path.name}: no worker answers (a dead worker's socket file)")
            continue
        ours = info.get("key") == key
        found += ours and info.get("op") == "status"
        state = "busy" if info.get("busy") else f"idle {info.get('idle_s', 0):.0f} s"
        typer.echo(f"pid {info.get('pid')}: face3d {info.get('version')}, {'compatible' if ours else 'another version or setting'}, "
                   f"{state}, {info.get('requests')} request(s), "
                   f"{info.get('rss_mb', 0):.0f} MB, up {time.time() - info.get('started', time.time()):.0f} s")
    if not found:
        typer.echo("no compatible worker is serving" + (" (one is warming up)" if serve.worker_running(key) else ""))
    return 0 if found else 1


def register(app: typer.Typer) -> None:
    app.command("serve", epilog=EPILOG)(serve_cmd)
