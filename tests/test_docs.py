"""The README and docs/*.md: their code blocks run as shown, their links resolve, CI's contract holds.

Blocks marked ``<!-- docs-test: skip: REASON -->`` (a download, a licensed model, minutes of CPU)
are syntax-checked and reported as skipped tests, one per block with its reason, so ``pytest -ra``
lists how many were skipped and why. The python blocks of docs/sdk.md run in
``tests/test_cli.py::test_sdk_doc_examples_run``.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from face3d.testing import (
    DocBlock,
    doc_blocks,
    load_script,
    require_tool,
    run_doc_block,
)

REPO = Path(__file__).resolve().parents[1]
DOCS = sorted((REPO / "docs").glob("*.md"))


def _docs_blocks() -> list[DocBlock]:
    """The bash/python blocks of docs/*.md this file runs (docs/sdk.md's python blocks run elsewhere)."""
    return [b for p in DOCS for b in doc_blocks(p) if not (p.name == "sdk.md" and b.lang == "python")]


def _marked() -> list[DocBlock]:
    return [b for b in doc_blocks(REPO / "README.md") + _docs_blocks() if b.skip]


def _hooks():
    """scripts/mkdocs_hooks.py, the MkDocs hooks that make the generated pages."""
    return load_script(REPO / "scripts" / "mkdocs_hooks.py")


def _slug(heading: str) -> str:
    """GitHub's anchor for a Markdown heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_doc_blocks_reads_fences_languages_and_skip_marks(tmp_path: Path) -> None:
    md = tmp_path / "a.md"
    md.write_text("# t\n\n```bash\necho 1\n```\n\n<!-- docs-test: skip: too slow -->\n```python\nprint(2)\n```\n"
                  "```\nplain\n```\n```json\n{}\n```\n")
    blocks = doc_blocks(md)
    assert [(b.line, b.lang, b.code, b.skip) for b in blocks] == [(3, "bash", "echo 1\n", None),
                                                                  (8, "python", "print(2)\n", "too slow")]
    assert run_doc_block(blocks[0], tmp_path).stdout == "1\n"
    md.write_text("```bash\necho never closed\n")
    with pytest.raises(ValueError, match="never closed"):
        doc_blocks(md)
    with pytest.raises(AssertionError, match="a.md:1 .bash. exited 3"):
        run_doc_block(DocBlock(md, 1, "bash", "exit 3\n"), tmp_path)


def test_readme_first_blocks_are_what_ci_runs() -> None:
    """.ci/run installs with README's first bash block and tests with its second (same awk as there)."""
    ci = (REPO / ".ci" / "run").read_text()
    awk = re.search(r"awk -v n=\"\$1\" '([^']+)' README.md", ci)
    assert awk, ".ci/run no longer extracts README blocks with awk"
    first, second = (subprocess.run(["awk", "-v", f"n={n}", awk.group(1), "README.md"], cwd=REPO, capture_output=True,
                                    text=True, check=True).stdout.strip() for n in (1, 2))
    assert first == 'python3 -m venv .venv && .venv/bin/pip install -e ".[all]" && .venv/bin/face3d warmup && .venv/bin/face3d reconstruct --demo -o out/'
    assert second == ".venv/bin/python -m pytest -n 2"
    bash = [b for b in doc_blocks(REPO / "README.md") if b.lang == "bash"]
    assert [b.code.strip() for b in bash[:2]] == [first, second] and all(b.skip for b in bash[:2])


def test_readme_and_docs_links_resolve() -> None:
    """Every relative link of README.md and docs/*.md names a file that exists, and its #anchor a heading there."""
    generated = {REPO / "docs" / page: REPO / source for source, page in _hooks().PAGES.items()}  # site pages from repo files
    checked = 0
    for page in [REPO / "README.md", *DOCS]:
        text = re.sub(r"```.*?```", "", page.read_text(), flags=re.DOTALL)
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+:", target):
                continue
            path, _, anchor = target.partition("#")
            dest = (page.parent / path).resolve() if path else page
            dest = generated.get(dest, dest)
            if dest == REPO / "docs" / "reference" / "cli.md":
                continue  # made from the typer app at build time; mkdocs checks it
            assert dest.exists(), f"{page.name}: link to missing {target}"
            if anchor and dest.suffix == ".md" and dest.parent.name != "reference":  # mkdocs checks mkdocstrings' anchors
                heads = {_slug(h) for h in re.findall(r"^#+ (.+)$", dest.read_text(), flags=re.MULTILINE)}
                assert anchor in heads, f"{page.name}: no heading #{anchor} in {dest.name}"
            checked += 1
    assert checked >= 20


@pytest.mark.parametrize("block", _marked(), ids=lambda b: b.where)
def test_marked_doc_block_is_valid_and_skipped(block: DocBlock) -> None:
    """A block the docs test does not run still parses; the skip names it and why."""
    if block.lang == "bash":
        r = subprocess.run(["bash", "-n", "-c", block.code], capture_output=True, text=True, check=False)
        assert r.returncode == 0, f"{block.where}: {r.stderr}"
        for sub in re.findall(r"(?:^|\s)face3d ([a-z-]+)", block.code):
            assert (REPO / "apps" / "commands" / f"{sub.replace('-', '_')}.py").is_file(), sub
    else:
        compile(block.code, block.where, "exec")
    pytest.skip(f"{block.where} not run (docs-test: skip): {block.skip}")


@pytest.mark.slow
def test_readme_blocks_run_in_order(tmp_path: Path) -> None:
    """README.md's unmarked bash/python blocks run, in order, in one empty folder, as a reader would."""
    require_tool("espeak-ng")  # the animate section makes its speech with espeak-ng
    blocks = [b for b in doc_blocks(REPO / "README.md") if not b.skip]
    assert len(blocks) >= 8
    for block in blocks:
        run_doc_block(block, tmp_path)
    for f in ["out/astronaut.png", "out/me/mesh.glb", "out/two", "out/batch/results.csv", "out/talk.glb", "out/talk.mp4",
              "out/talk.csv", "out/take.json", "face3d_blender.zip", "out/basic/mesh.obj", "out/from_python/params.json"]:
        assert (tmp_path / f).exists(), f


def test_docs_blocks_run(tmp_path: Path) -> None:
    """The unmarked bash/python blocks of docs/*.md (sdk.md's python blocks: test_cli) run, each page in its own folder."""
    blocks = [b for b in _docs_blocks() if not b.skip]
    assert blocks
    for block in blocks:
        folder = tmp_path / block.path.stem
        folder.mkdir(exist_ok=True)
        run_doc_block(block, folder)
    assert (tmp_path / "cli" / "face3d_blender.zip").stat().st_size > 1000


def test_mkdocs_site_builds_strict_with_every_public_name(tmp_path: Path) -> None:
    """``mkdocs build --strict`` passes (broken links, anchors or docstrings fail it), and the reference
    pages name every public name of ``face3d`` and ``face3d.renderers`` and every CLI command and option."""
    import os
    import sys

    import typer.main

    import face3d
    from face3d import renderers
    from face3d.apps.cli import app

    require_tool("mkdocs")
    site = tmp_path / "site"
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    r = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(REPO / "mkdocs.yml"), "-d", str(site)],
                       cwd=REPO, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert r.returncode == 0, r.stderr[-4000:]
    sdk = (site / "reference" / "sdk" / "index.html").read_text()
    for name in face3d.__all__:
        if name == "__version__":
            assert "__version__" in sdk
            continue
        target = "face3d.errors" if name == "errors" else ".".join(face3d._LAZY[name])
        assert f'id="{target}"' in sdk, f"face3d.{name} ({target}) missing from the SDK reference"
    rend = (site / "reference" / "renderers" / "index.html").read_text()
    for name in renderers.__all__:
        assert f'id="face3d.renderers.{name}"' in rend, f"face3d.renderers.{name} missing from the renderer reference"
    cli = (site / "reference" / "cli" / "index.html").read_text()
    root = typer.main.get_command(app)

    def walk(cmd, path: str, parent) -> None:
        ctx = cmd.context_class(cmd, info_name=path.split()[-1], parent=parent)
        assert f"<code>{path}</code>" in cli, f"{path} missing from the CLI reference"
        for p in cmd.params:
            for opt in p.opts if p.param_type_name == "option" else []:
                assert f"<code>{opt}</code>" in cli, f"{path} {opt} missing from the CLI reference"
        for sub in getattr(cmd, "list_commands", lambda c: [])(ctx):
            walk(cmd.get_command(ctx, sub), f"{path} {sub}", ctx)

    walk(root, "face3d", None)
    assert "<table>" in (site / "models" / "index.html").read_text()  # the registry's table was filled in
    assert (site / "images" / "readme.png").is_file() and (site / "benchmarks" / "index.html").is_file()


def test_installed_layout_is_the_wheels_package_tree(tmp_path: Path) -> None:
    """The API reference reads this copy: renderers/ and apps/ as face3d/renderers/ and face3d/apps/,
    in place of the checkout's shim modules, and nothing at the top level but face3d."""
    out = _hooks().installed_layout(tmp_path)
    assert out == tmp_path and [p.name for p in tmp_path.iterdir()] == ["face3d"]
    pkg = tmp_path / "face3d"
    assert not (pkg / "renderers.py").exists() and not (pkg / "apps.py").exists()
    assert (pkg / "renderers" / "backends" / "torch_cpu.py").read_bytes() == (REPO / "renderers" / "backends" / "torch_cpu.py").read_bytes()
    assert (pkg / "apps" / "cli.py").read_bytes() == (REPO / "apps" / "cli.py").read_bytes()
    assert (pkg / "mesh.py").read_bytes() == (REPO / "face3d" / "mesh.py").read_bytes()
    assert not list(tmp_path.rglob("__pycache__"))


def test_site_links_rewrites_repository_links_for_the_site() -> None:
    hooks = _hooks()
    md = ("[a](docs/cli.md#x) [b](benchmarks/README.md#y) [c](examples/x.py) ![i](docs/images/r.png) "
          "[d](https://x.org/a.md) [e](CHANGELOG.md) [f](#top)\n```\n[g](examples/y.py)\n```\n")
    assert hooks.site_links(md, "README.md") == (
        "[a](cli.md#x) [b](benchmarks.md#y) c ![i](images/r.png) [d](https://x.org/a.md) [e](changelog.md) [f](#top)\n"
        "```\n[g](examples/y.py)\n```\n")
    assert hooks.site_links("[r](README.md) [s](results/a.png)", "benchmarks/README.md") == "[r](benchmarks.md) s"
    assert "| `basic` |" in hooks.models_table() and "`face3d models install`" in hooks.cli_markdown()
