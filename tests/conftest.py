"""Test-session settings: one torch thread per pytest worker.

With ``pytest -n 2`` on a 2-core machine, torch's default of one thread per core makes the
workers' OpenMP pools spin against each other (measured ~15x slower on small ops), so each
worker uses a single, passively waiting thread.
"""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402

torch.set_num_threads(1)
