"""The ``face3d`` command line: every command is listed and documented with an example; exit codes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import typer

from face3d.apps.cli import app, main

REPO = Path(__file__).resolve().parents[1]


def _command_names(t: typer.Typer) -> list[str]:
    names = [c.name or (c.callback.__name__.replace("_", "-") if c.callback else "") for c in t.registered_commands]
    names += [g.name or (g.typer_instance.info.name if g.typer_instance else "") for g in t.registered_groups]
    return [n for n in names if n]


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "face3d.apps.cli", *args], capture_output=True, text=True, cwd=REPO,
                          timeout=120)


def test_every_command_module_registers_a_listed_command() -> None:
    names = _command_names(app)
    modules = sorted(p.stem for p in (REPO / "apps" / "commands").glob("*.py") if p.stem != "__init__")
    assert len(names) >= len(modules)
    assert {"batch", "blender-addon"} <= set(names)
    proc = _run("--help")
    assert proc.returncode == 0
    for name in names:
        assert name in proc.stdout, f"'{name}' missing from face3d --help"
    assert "Exit codes" in proc.stdout


def test_every_command_help_has_an_example(capsys: pytest.CaptureFixture) -> None:
    for name in _command_names(app):
        code = main([name, "--help"])
        out = capsys.readouterr().out
        assert code == 0, name
        assert "Example" in out and f"face3d {name}" in out, f"face3d {name} --help shows no example"


def test_exit_code_bad_input_is_2(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["batch", str(tmp_path / "missing"), "-o", str(tmp_path / "out")]) == 2
    assert "missing: no such file, folder or glob" in capsys.readouterr().err
    assert main(["batch", str(tmp_path), "-o", str(tmp_path / "out"), "--preset", "nope"]) == 2
    assert "preset" in capsys.readouterr().err and not (tmp_path / "out").exists()


def test_exit_code_missing_dependency_is_3(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)
    (tmp_path / "a.jpg").write_bytes(b"x")
    assert main(["batch", str(tmp_path / "a.jpg"), "-o", str(tmp_path / "o"), "--engine", "ray"]) == 3
    assert "pip install" in capsys.readouterr().err


def test_exit_code_internal_error_is_1() -> None:
    code = ("import sys, face3d.apps.cli as c\n"
            "c.app.command('boom')(lambda: 1 / 0)\n"
            "sys.exit(c.main(['boom']))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert proc.returncode == 1 and "ZeroDivisionError" in proc.stderr


def test_blender_addon_command_writes_zip(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["blender-addon", "-o", str(tmp_path / "f.zip")]) == 0
    assert (tmp_path / "f.zip").stat().st_size > 1000
    assert main(["blender-addon", "-o", str(tmp_path / "f.rar")]) == 2


def test_console_exit_skips_only_the_teardown(tmp_path: Path) -> None:
    """``entry`` (the console script) ends with os._exit after what a normal exit does: thread
    pools finish, atexit handlers run, stdout is complete, the command's exit code is kept."""
    code = ("import atexit, sys, threading, time\n"
            "from pathlib import Path\n"
            "import face3d.apps.cli as c\n"
            "out = Path(sys.argv[1])\n"
            "atexit.register(lambda: (out / 'atexit.txt').write_text('ran'))\n"
            "def late():\n"
            "    time.sleep(0.3); (out / 'thread.txt').write_text('done')\n"
            "threading.Thread(target=late).start()\n"
            "sys.stdout.write('x' * 100000)  # buffered: lost unless flushed before os._exit\n"
            "sys.argv = ['face3d'] + sys.argv[2:]\n"
            "c.entry()\n"
            "print('not reached')\n")
    for args, want in ((["--help"], 0), (["reconstruct", str(tmp_path / "missing.jpg"), "-o", str(tmp_path / "o")], 2)):
        for f in ("atexit.txt", "thread.txt"):
            (tmp_path / f).unlink(missing_ok=True)
        proc = subprocess.run([sys.executable, "-c", code, str(tmp_path), *args], capture_output=True, text=True, cwd=REPO,
                              timeout=120, env={**os.environ, "FACE3D_SERVE": "0"})
        assert proc.returncode == want, proc.stderr
        assert proc.stdout.startswith("x" * 100000) and "not reached" not in proc.stdout
        assert (tmp_path / "atexit.txt").read_text() == "ran" and (tmp_path / "thread.txt").read_text() == "done"
    assert "missing.jpg" in proc.stderr


def test_exit_code_usage_error_is_2() -> None:
    proc = _run("batch", "--no-such-option")
    assert proc.returncode == 2 and "No such option" in proc.stderr


@pytest.mark.slow
def test_sdk_doc_examples_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every ```python block of docs/sdk.md runs, in order, in one process, in an empty folder
    (``tests/test_docs.py`` runs the other blocks of the docs)."""
    from face3d.testing import doc_blocks

    blocks = doc_blocks(REPO / "docs" / "sdk.md", ("python",))
    assert len(blocks) >= 5 and not [b.where for b in blocks if b.skip]
    monkeypatch.chdir(tmp_path)
    for block in blocks:
        exec(compile(block.code, block.where, "exec"), {"__name__": "__docs__"})
    assert (tmp_path / "out/astronaut/mesh.glb").is_file() and (tmp_path / "out/batch/results.csv").is_file()
