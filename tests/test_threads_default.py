"""Thread defaults that cannot collapse under a busy neighbour: OpenMP's idle threads sleep (PASSIVE)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def policy_after(code: str, **env: str) -> str:
    base = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    base["PYTHONPATH"] = str(ROOT)
    out = subprocess.run([sys.executable, "-c", code + "; import os; print(os.environ.get('OMP_WAIT_POLICY', 'unset'))"],
                         env={**base, **env}, capture_output=True, text=True, check=True, cwd=ROOT)
    return out.stdout.strip().splitlines()[-1]


@pytest.mark.parametrize("module", ["face3d", "face3d.renderers", "face3d.apps.cli"])
def test_importing_face3d_before_torch_makes_openmp_wait_passively(module):
    assert policy_after(f"import {module}") == "PASSIVE"


def test_the_users_own_policy_is_kept():
    assert policy_after("import face3d", OMP_WAIT_POLICY="ACTIVE") == "ACTIVE"


def test_nothing_is_set_once_torch_was_loaded():
    # torch read the variable when it loaded its OpenMP runtime: setting it later would only mislead
    assert policy_after("import torch, face3d, face3d.renderers") == "unset"
