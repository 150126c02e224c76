"""Loads a package (the archive form of specialize) from its extracted directory
(docs/runtime-contract.md, "Entry points"): the entrypoint ``module.fn`` names a module of the
package (``main``, ``lib/app`` or ``lib.app``) and a function in it; the default is ``main.main``,
and a bare ``fn`` is a function in ``main.py``. The package directory is first on ``sys.path``,
so sibling modules and dependencies installed with ``pip install --target`` import as usual.
"""

from __future__ import annotations

import importlib
import os
import sys

from fizz_loader import LoadError, describe_load_error, takes_context

# typing costs milliseconds of cold start; annotations are never evaluated (PEP 563).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Optional, Tuple

DEFAULT_ENTRYPOINT = "main.main"


def load_package(directory: str, entrypoint: Optional[str]) -> Tuple[Callable[..., Any], bool]:
    label = entrypoint or DEFAULT_ENTRYPOINT
    module_part, _, name = label.rpartition(".")
    module_name = (module_part or "main").replace("/", ".")
    parts = module_name.split(".")
    if not all(part.isidentifier() for part in parts):
        raise LoadError(f'entrypoint "{label}": "{module_part}" is not a Python module name')
    relative = os.path.join(*parts)
    path = os.path.join(directory, relative + ".py")
    if not os.path.isfile(path):
        path = os.path.join(directory, relative, "__init__.py")
        if not os.path.isfile(path):
            raise LoadError(f'entrypoint "{label}": the package has no {relative}.py')
    shown = os.path.relpath(path, directory)
    # A module the runtime (or the standard library through it) already imported would be
    # returned instead of the package's file.
    taken = sys.modules.get(parts[0])
    if taken is not None and not _inside(getattr(taken, "__file__", None), directory):
        raise LoadError(f'{shown}: the module name "{parts[0]}" is taken by the runtime; rename it')

    sys.path.insert(0, directory)
    importlib.invalidate_caches()
    try:
        module = importlib.import_module(module_name)
    except (Exception, SystemExit) as exc:  # SystemExit: a top-level sys.exit() is a load failure too
        raise LoadError(describe_load_error(exc, path, directory)) from None

    fn = getattr(module, name, None)
    if not callable(fn):
        raise LoadError(f'{shown}: entrypoint "{label}" is not a function defined by the module')
    return fn, takes_context(fn, shown, label)


def _inside(path: Optional[str], directory: str) -> bool:
    return bool(path) and os.path.abspath(path).startswith(directory.rstrip(os.sep) + os.sep)
