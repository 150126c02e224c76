"""Fizz's instance spawner: `python3 -I -S fizz_spawner.py SOCKET PARENT_PID`, as root (the
poolkeeper's spawner-client.ts). The code and the protocol are in the fizzspawn package beside
this file.

It runs as root, so what it imports must be as trusted as this file. -I -S leave sys.path with
the standard library only (no script directory, no PYTHON* variables, no user or site packages),
and it stays so: the package is loaded from this file's own directory by its path, not found
through sys.path, so nothing else there, and no directory anyone else can write to, is ever
searched for a module. Whoever can change that directory can change this file as well.
"""

import importlib.util
import os
import sys

# Root compiling the package would leave root-owned __pycache__ directories in a source tree.
sys.dont_write_bytecode = True


def _load_package():
    here = os.path.dirname(os.path.realpath(__file__))
    pkg_dir = os.path.join(here, "fizzspawn")
    spec = importlib.util.spec_from_file_location(
        "fizzspawn", os.path.join(pkg_dir, "__init__.py"), submodule_search_locations=[pkg_dir]
    )
    pkg = importlib.util.module_from_spec(spec)
    # Registered before it runs: its submodules' relative imports resolve through it.
    sys.modules["fizzspawn"] = pkg
    spec.loader.exec_module(pkg)
    return pkg


_load_package()
from fizzspawn import server  # noqa: E402 - found in sys.modules, registered just above

if __name__ == "__main__":
    server.main(sys.argv)
