"""``face3d.apps`` in a source checkout: the CLI, batch engines and Blender add-on.

The product layout keeps them in the ``apps/`` folder beside ``face3d/``; a wheel installs that
folder as the package ``face3d/apps/`` (``package-dir`` in pyproject.toml), which takes precedence
over this module, so no generic top-level ``apps`` package is ever installed. In a checkout (or an
editable install) this module makes the folder the package ``face3d.apps``. Code inside ``apps/``
imports its siblings relatively, so it runs under either name.
"""

from pathlib import Path

__path__ = [str(Path(__file__).resolve().parents[1] / "apps")]
