"""MkDocs hooks (``hooks:`` in mkdocs.yml): pages made from the repository at build time, offline.

- ``index.md`` (Getting started) from README.md, ``benchmarks.md`` from benchmarks/README.md and
  ``changelog.md`` from CHANGELOG.md, with their links rewritten for the site;
- ``reference/cli.md``: every command, option and example of the ``face3d`` typer app, from its click tree;
- in ``models.md``, ``<!-- models-table -->`` becomes the table of ``face3d.models.registry``;
- the API reference (mkdocstrings) reads the packages as a wheel installs them (:func:`installed_layout`),
  so ``face3d.renderers`` and ``face3d.apps`` resolve although they are folders beside ``face3d/``.

``python scripts/mkdocs_hooks.py`` prints the CLI reference.
"""

from __future__ import annotations

import atexit
import re
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

try:
    from mkdocs.plugins import event_priority
except ImportError:  # printing the CLI reference needs no mkdocs
    def event_priority(priority: float) -> Any:
        return lambda f: f

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

#: Repository files that are pages of the site, and their page names.
PAGES = {"README.md": "index.md", "benchmarks/README.md": "benchmarks.md", "CHANGELOG.md": "changelog.md"}


def site_links(markdown: str, source: str) -> str:
    """Rewrite the relative links of the repository file ``source`` for the site: ``docs/X`` -> ``X``,
    the files of :data:`PAGES` -> their pages, anything else outside docs/ -> its text (not a link)."""
    base = Path(source).parent

    def fix(m: re.Match[str]) -> str:
        bang, text, target = m.group(1), m.group(2), m.group(3)
        if re.match(r"[a-z]+:", target) or target.startswith("#"):
            return m.group(0)
        path, _, anchor = target.partition("#")
        rel = (base / path).as_posix() if path else source
        rel = str(Path(rel)).replace("\\", "/")
        if rel in PAGES:
            new = PAGES[rel]
        elif rel.startswith("docs/") and rel != "docs/":
            new = rel[len("docs/"):]
        else:
            return text if not bang else ""
        return f"{bang}[{text}]({new}{'#' + anchor if anchor else ''})"

    parts = re.split(r"(```.*?```)", markdown, flags=re.DOTALL)  # leave code blocks alone
    return "".join(p if p.startswith("```") else re.sub(r"(!?)\[([^\]]*)\]\(([^)\s]+)\)", fix, p) for p in parts)


def _cell(text: Any) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def _type_name(param: Any) -> str:
    """The Python type a typer parameter is declared with (``str``, ``Path``, ``list[Path]``...)."""
    import typing

    ann = getattr(getattr(param, "type_descriptor", None), "annotation", None)
    if ann is None:
        return getattr(getattr(param, "type", None), "name", "value")
    args = [a for a in typing.get_args(ann) if a is not type(None)]
    if typing.get_origin(ann) in (typing.Union, getattr(__import__("types"), "UnionType", None)) and len(args) == 1:
        ann = args[0]
    return str(ann).replace("pathlib.", "") if typing.get_args(ann) else getattr(ann, "__name__", str(ann))


def cli_markdown() -> str:
    """Markdown reference of the ``face3d`` command line, generated from the typer app's click commands."""
    import typer.main

    from face3d.apps.cli import app

    root = typer.main.get_command(app)
    out = ["# Command-line reference", "",
           ("Generated from the `face3d` typer app (`apps/cli.py`, `apps/commands/`) when the site is built. "
            "The [guide](cli.md) explains batch layouts, resume, models and the Blender add-on."), ""]

    # typer carries its own copy of click: use the command's own Context class, and duck typing
    def walk(cmd: Any, path: list[str], ctx_parent: Any) -> None:
        ctx = cmd.context_class(cmd, info_name=path[-1], parent=ctx_parent)
        name = " ".join(path)
        out.extend([f"## `{name}`", ""])
        if cmd.help:
            out.extend([cmd.help.strip(), ""])
        out.extend(["```text", f"Usage: {name} {' '.join(cmd.collect_usage_pieces(ctx))}".rstrip(), "```", ""])
        rows = []
        for p in cmd.params:
            if p.param_type_name == "argument":
                names = f"`{(p.metavar or p.name or '').upper()}`"
            else:
                names = ", ".join(f"`{o}`" for o in [*p.opts, *p.secondary_opts])
            default = p.default if not callable(p.default) else None
            show = "" if default in (None, False, (), []) else f"`{default}`"
            kind = "flag" if getattr(p, "is_flag", False) else _type_name(p)
            rows.append(f"| {names} | {kind}{' (required)' if p.required else ''} | {show} | {_cell(getattr(p, 'help', '') or '')} |")
        rows.append("| `--help` | flag | | Show the help and exit. |")
        out.extend(["| argument / option | type | default | meaning |", "|---|---|---|---|", *rows, ""])
        if cmd.epilog:
            out.extend(["```text", cmd.epilog.strip(), "```", ""])
        if hasattr(cmd, "list_commands"):
            for sub in cmd.list_commands(ctx):
                walk(cmd.get_command(ctx, sub), [*path, sub], ctx)

    walk(root, ["face3d"], None)
    return "\n".join(out) + "\n"


def models_table() -> str:
    """Markdown table of the model names ``face3d.load_model`` knows: what each is, its licence, how to get it."""
    from face3d.models.registry import available_models, model_info

    rows = ["| name | what | licence | how to get it |", "|---|---|---|---|"]
    for name in available_models():
        info = model_info(name)
        rows.append(f"| `{name}` | {_cell(info.description)} | {_cell(info.licence)} | {_cell(info.how_to_get)} |")
    return "\n".join(rows) + "\n"


def installed_layout(dest: Path) -> Path:
    """Copy the packages under ``dest`` as a wheel installs them: the folders of pyproject's
    ``package-dir`` (``apps/``, ``renderers/``) become ``face3d/apps/`` and ``face3d/renderers/``, in
    place of the source-checkout shims ``face3d/apps.py`` and ``face3d/renderers.py`` (griffe reads
    files statically and cannot follow a shim). Returns ``dest``."""
    import tomllib

    setuptools = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.nbi", "*.nbc")
    shutil.copytree(REPO / "face3d", dest / "face3d", ignore=ignore, dirs_exist_ok=True)
    for package, folder in setuptools["package-dir"].items():
        target = dest.joinpath(*package.split("."))
        target.with_suffix(".py").unlink(missing_ok=True)
        shutil.copytree(REPO / folder, target, ignore=ignore, dirs_exist_ok=True)
    return dest


@event_priority(100)  # before mkdocstrings' own on_config, which creates the handler
def on_config(config: Any) -> Any:
    """Point mkdocstrings' Python handler at :func:`installed_layout` in a temporary folder."""
    tmp = Path(tempfile.mkdtemp(prefix="face3d-docs-"))
    atexit.register(shutil.rmtree, tmp, True)
    handlers = config["plugins"]["mkdocstrings"].config["handlers"]
    handlers.setdefault("python", {})["paths"] = [str(installed_layout(tmp))]
    return config


def on_files(files: Any, config: Any) -> Any:
    """Add the generated pages."""
    from mkdocs.structure.files import File

    for source, page in PAGES.items():
        text = site_links((REPO / source).read_text(encoding="utf-8"), source)
        files.append(File.generated(config, page, content=text))
    files.append(File.generated(config, "reference/cli.md", content=cli_markdown()))
    return files


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    """Fill the ``<!-- models-table -->`` placeholder."""
    return markdown.replace("<!-- models-table -->", models_table()) if "<!-- models-table -->" in markdown else markdown


if __name__ == "__main__":
    print(cli_markdown())
