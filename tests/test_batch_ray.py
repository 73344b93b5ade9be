"""The Ray engine gives the same results (rows and files) as the local engine, on a local Ray."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from apps.batch import run_batch
from apps.cli import main
from test_batch import _photos, fake_work

ray = pytest.importorskip("ray", reason="ray is an optional dependency (face3d[dist])")


def _comparable(report) -> list[tuple]:
    return [(r.key, r.inputs, r.person, r.status, r.error_type, r.error_message, r.exit_code, r.fingerprint,
             r.metrics.get("bytes"), sorted(r.timings)) for r in report.results]


@pytest.fixture(scope="module")
def local_ray():
    """One local Ray instance for the module (run_ray then joins it instead of starting its own)."""
    import ray.cloudpickle

    from apps.batch.ray_engine import import_ray

    import_ray()
    ray.cloudpickle.register_pickle_by_value(sys.modules[fake_work.__module__])
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="WARNING")
    yield ray
    ray.shutdown()


def test_ray_results_identical_to_local(tmp_path: Path, local_ray) -> None:
    root = _photos(tmp_path / "in", ["a.jpg", "bad.png", "s/b.jpg", "c.png"])
    local = run_batch(root, tmp_path / "local", workers=2, work=fake_work)
    distributed = run_batch(root, tmp_path / "ray", workers=2, engine="ray", work=fake_work)
    assert _comparable(local) == _comparable(distributed)
    assert [r.status for r in distributed.results] == ["ok", "failed", "ok", "ok"]
    for r in local.results:
        if r.status == "ok":
            assert (tmp_path / "ray" / r.key / "result.txt").read_bytes() == \
                (tmp_path / "local" / r.key / "result.txt").read_bytes()
    assert distributed.summary["engine"] == "ray" and distributed.exit_code == local.exit_code == 2
    resumed = run_batch(root, tmp_path / "ray", workers=2, engine="ray", work=fake_work, resume=True)
    assert [r.resumed for r in resumed.results] == [True, False, True, True]


def test_missing_ray_exits_3(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)
    (tmp_path / "x.jpg").write_bytes(b"")
    code = main(["batch", str(tmp_path / "x.jpg"), "-o", str(tmp_path / "o"), "--engine", "ray"])
    assert code == 3
    assert 'pip install "face3d[dist]"' in capsys.readouterr().err
