"""``face3d.renderers`` in a source checkout: the differentiable renderer.

The product layout keeps it in the ``renderers/`` folder beside ``face3d/``; a wheel installs that
folder as the package ``face3d/renderers/`` (``package-dir`` in pyproject.toml), which takes
precedence over this module, so no top-level ``renderers`` package is installed (that name is
taken on PyPI). In a checkout (or an editable install) this module loads the folder's
``__init__.py`` as the package ``face3d.renderers``, the same object a wheel gives. Code inside
``renderers/`` imports its siblings relatively, so it runs under either name.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # mypy cannot follow the loader below; it reads the folder as the package ``renderers``
    from renderers import *
else:
    _init = Path(__file__).resolve().parents[1] / "renderers" / "__init__.py"
    _spec = importlib.util.spec_from_file_location(__name__, _init, submodule_search_locations=[str(_init.parent)])
    _package = importlib.util.module_from_spec(_spec)
    sys.modules[__name__] = _package  # the import statement returns this module, not the shim
    _spec.loader.exec_module(_package)
