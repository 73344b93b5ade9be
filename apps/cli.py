"""The ``face3d`` command line: a typer app whose sub-commands live in ``apps.commands``.

Exit codes: 0 ok, 1 internal error, 2 bad input (``BadInputError``), 3 missing optional
dependency (``MissingDependencyError``).
"""

from __future__ import annotations

import errno
import importlib
import os
import pkgutil
import sys
from typing import NoReturn

# MediaPipe's TFLite/glog INFO lines ("Created TensorFlow Lite XNNPACK delegate") would precede
# the one 'error:' line on stderr; keep warnings and errors only.
os.environ.setdefault("GLOG_minloglevel", "2")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Before torch loads its OpenMP runtime: idle threads sleep instead of spinning (a busy neighbour
# process made spinning threads 16x slower on 2 cores; benchmarks/README.md). A user's setting is kept.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import typer

from face3d.errors import Face3DError

#: OS errors that are the user's environment, not a bug: exit 2 with one line.
USER_ERRNOS = frozenset({errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EPERM, errno.EDQUOT, errno.ENAMETOOLONG,
                         errno.ELOOP, errno.EISDIR, errno.ENOTDIR, errno.EFBIG, errno.EMFILE})

app = typer.Typer(
    name="face3d",
    help="3D face reconstruction and avatars. Exit codes: 0 ok, 1 internal error, 2 bad input, 3 missing optional dependency.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _print_version(value: bool) -> None:
    if value:
        import face3d

        typer.echo(f"face3d {face3d.__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True,
                                 help="Print face3d's version (from pyproject.toml) and exit."),
) -> None:
    pass


def _register_commands() -> None:
    from . import commands

    for mod in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{commands.__name__}.{mod.name}")
        module.register(app)


_register_commands()


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; turns face3d errors into a one-line message and an exit code.

    ``reconstruct`` and ``animate`` go to a live, compatible resident worker when there is one
    (``apps.serve``: same output, same exit code, ≈ 3 s less start-up); otherwise they run here,
    and a detached worker is started for the next run (``FACE3D_SERVE=0``: neither)."""
    from . import serve

    args = list(sys.argv[1:] if argv is None else argv)
    use_worker = serve.enabled() and serve.served(args)
    if use_worker:
        try:
            code = serve.run_in_worker(args)
        except KeyboardInterrupt:  # while looking for the worker
            typer.echo("interrupted", err=True)
            return 130
        if code is not None:
            return code
    code = run(args)
    if use_worker and code in (0, 2) and not serve.worker_running():
        serve.start_worker()
    return code


def run(argv: list[str], prog_name: str | None = None) -> int:
    """Run the CLI in this process (what a resident worker runs for each request)."""
    try:
        rv = app(args=argv, prog_name=prog_name, standalone_mode=False)
    except Face3DError as exc:
        typer.echo(f"error: {exc}", err=True)
        return exc.exit_code
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        return 130
    except OSError as exc:
        if exc.errno not in USER_ERRNOS:
            raise
        where = f"{exc.filename}: " if exc.filename else ""
        typer.echo(f"error: {where}{exc.strerror or exc}", err=True)  # a full disk, a read-only place: the user's to fix
        return 2
    except SystemExit as exc:
        return int(exc.code or 0)
    except Exception as exc:  # click usage errors (typer bundles its own click) carry an exit code
        if callable(getattr(exc, "show", None)) and isinstance(getattr(exc, "exit_code", None), int):
            exc.show()  # type: ignore[attr-defined]
            return int(exc.exit_code)  # type: ignore[attr-defined]
        if type(exc).__name__ == "Abort":
            return 130
        raise
    return rv if isinstance(rv, int) else 0


def exit_now(code: int) -> NoReturn:
    """End this process with ``code`` the way a normal exit would, less the interpreter's teardown.

    A normal exit runs the thread joins and ``atexit`` handlers, flushes stdout and stderr, then frees
    every module and object one by one: ≈ 0.8 s after a reconstruct (torch, MediaPipe, numba;
    benchmarks/README.md, issue 26) that nobody waits for usefully. This runs the first three and
    ends the process (``os._exit``); face3d's files are written and closed by then (atomic writes).
    Falls back to ``sys.exit`` where CPython's shutdown hooks are not found."""
    import atexit
    import threading

    shutdown, run_exitfuncs = getattr(threading, "_shutdown", None), getattr(atexit, "_run_exitfuncs", None)
    if shutdown is None or run_exitfuncs is None:
        sys.exit(code)
    shutdown()  # non-daemon threads (thread pools) finish, as at a normal exit
    run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe: nothing more can be written anyway
            pass
    os._exit(code)


def entry() -> NoReturn:
    """The ``face3d`` console script: :func:`main`, then :func:`exit_now` (an uncaught exception
    still leaves the normal way, with its traceback and exit code 1)."""
    exit_now(main())


if __name__ == "__main__":
    entry()
