"""Fizz's instance spawner: `python3 -I -S fizz_spawner.py SOCKET PARENT_PID`, as root (the
poolkeeper's spawner-client.ts); `fizz_spawner.py --kill-pass RUID UID LOCK` runs one kill pass
of a uid's clean-up instead (fizzspawn/killpass.py). The code and the protocol are in the
fizzspawn package beside this file.

It runs as root, so what it imports must be as trusted as this file. -I -S leave sys.path with
the standard library only (no script directory, no PYTHON* variables, no user or site packages),
and it stays so: the package is loaded from this file's own directory by its path, not found
through sys.path, so nothing else there, and no directory anyone else can write to, is ever
searched for a module. Whoever can change that directory can change this file as well. Only the
package's .py files run: never a .pyc from __pycache__ (git ignores that directory, so a stale
one, or one planted with an unchecked hash, which no change of the source invalidates, would run
as root unseen in place of the source) nor an extension module of the same name.
"""

import importlib.machinery
import importlib.util
import os
import sys

# Root compiling the package would leave root-owned __pycache__ directories in a source tree.
sys.dont_write_bytecode = True


class _SourceOnly(importlib.machinery.SourceFileLoader):
    """Compiles the module from its .py file, whatever __pycache__ holds."""

    def get_code(self, fullname):
        path = self.get_filename(fullname)
        return self.source_to_code(self.get_data(path), path)


def _load_package():
    here = os.path.dirname(os.path.realpath(__file__))
    pkg_dir = os.path.join(here, "fizzspawn")
    # The finder of the package's submodules, in place of the default one (which prefers an
    # extension module, and a .pyc in __pycache__): .py files only, compiled from source.
    sys.path_importer_cache[pkg_dir] = importlib.machinery.FileFinder(
        pkg_dir, (_SourceOnly, [".py"])
    )
    init = os.path.join(pkg_dir, "__init__.py")
    spec = importlib.util.spec_from_file_location(
        "fizzspawn",
        init,
        loader=_SourceOnly("fizzspawn", init),
        submodule_search_locations=[pkg_dir],
    )
    pkg = importlib.util.module_from_spec(spec)
    # Registered before it runs: its submodules' relative imports resolve through it.
    sys.modules["fizzspawn"] = pkg
    spec.loader.exec_module(pkg)
    return pkg


_load_package()

if __name__ == "__main__" and sys.argv[1:2] == ["--kill-pass"]:
    # A clean-up's kill pass where there is no spawner to fork it (fizzspawn/killpass.py).
    from fizzspawn import killpass  # noqa: E402 - found through the package registered above

    killpass.main(sys.argv[2:])

from fizzspawn import server  # noqa: E402 - found in sys.modules, registered just above

if __name__ == "__main__":
    server.main(sys.argv)
