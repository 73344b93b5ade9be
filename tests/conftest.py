"""Test-session settings: one torch thread per pytest worker, no resident CLI workers, and missing external tools.

With ``pytest -n 2`` on a 2-core machine, torch's default of one thread per core makes the
workers' OpenMP pools spin against each other (measured ~15x slower on small ops), so each
worker uses a single, passively waiting thread.

Tools outside the Python environment go through :func:`face3d.testing.require_tool` (skip with
the command that installs the tool; fail under ``CI=true``). Tests that synthesise speech need
no marker: a :class:`~face3d.errors.MissingDependencyError` for espeak-ng raised while a test
(or its fixtures) runs is handed to ``require_tool("espeak-ng")``.
"""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("OMP_NUM_THREADS", "1")
# No resident workers (apps/serve.py) from CLI runs in tests, also in their subprocesses;
# tests/test_serve.py starts and stops its own, in private cache folders.
os.environ["FACE3D_SERVE"] = "0"

import pytest  # noqa: E402
import torch  # noqa: E402

from face3d.errors import MissingDependencyError  # noqa: E402
from face3d.testing import require_tool, use_shared_ict  # noqa: E402

torch.set_num_threads(1)
use_shared_ict()  # load_model("ict") reads the shared data's ICT-FaceKit (FACE3D_ICT, inherited by subprocesses)


def _missing_tool(exc: MissingDependencyError) -> None:
    if "espeak" in exc.package:
        require_tool("espeak-ng")  # skips or fails when espeak-ng is missing; returns when it is there


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item):
    try:
        return (yield)
    except MissingDependencyError as exc:
        _missing_tool(exc)
        raise


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    try:
        return (yield)
    except MissingDependencyError as exc:
        _missing_tool(exc)
        raise
