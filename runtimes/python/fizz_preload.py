"""Flask for Fission-style functions, brought in without costing anyone else (docs/runtime-contract.md,
Python).

Importing Flask takes ~200 ms, most of a Flask function's cold start. A generic instance imports it
in a background thread once it is listening, so a pool instance specializes a Flask function as fast
as any other. A pool instance announces readiness once the import is over (fizz_readiness.Readiness:
a full pool has no start-up CPU left to compete with cold starts); one a specialize already waits
for (FIZZ_WARM_UP=0) announces on listen. The import gives way to a specialization: the first
specialize stops it at the next module it would import and waits for that (a few milliseconds), so
a ``def main(context)`` function never shares the CPU with it; whatever the function then needs of
Flask it imports itself, on its own thread.

Also here: Flask 2.3 deprecated and 3.0 removed ``flask.escape`` and ``flask.Markup``, which
Fission's examples import; they are put back (from markupsafe, where they always came from) as
Flask is imported, by whoever imports it first.
"""

from __future__ import annotations

import os
import sys
import threading
import time

# typing costs milliseconds of cold start; annotations are never evaluated (PEP 563).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, List, Optional


class _Stopped(BaseException):
    """Raised into the preload's own imports to end it: a BaseException, so that no
    ``except ImportError`` (or ``except Exception``) around an import inside a library swallows it."""


class Preloader:
    """``state``: "off" (not started), "loading", "ready", "stopped" (a specialize came first),
    "absent" (Flask is not installed) or "failed"."""

    def __init__(self, module: str = "flask") -> None:
        self.module = module
        self.state = "off"
        self._stop = False
        self._thread: Optional[threading.Thread] = None
        self._started: List[str] = []  # every module this preload began to import, in order
        self._on_done: Optional[Callable[[], None]] = None

    def start(self, on_done: Optional[Callable[[], None]] = None) -> None:
        """``on_done`` runs on the preload's thread once it is over, however it ended."""
        self.state = "loading"
        self._on_done = on_done
        self._thread = threading.Thread(target=self._run, name="fizz-flask-preload", daemon=True)
        sys.meta_path.insert(0, self)
        self._thread.start()

    def stopping(self) -> bool:
        """Whether a specialize asked this preload to end (the rehearsal after it ends too)."""
        return self._stop

    def stop(self) -> None:
        """Ends the preload at its next import and returns once its thread is done."""
        thread = self._thread
        if thread is None:
            return
        self._stop = True
        thread.join()

    def _run(self) -> None:
        try:
            self._load()
        finally:
            if self._on_done is not None:
                self._on_done()

    def _load(self) -> None:
        # A request arriving meanwhile (a probe, the specialize that stops this) gets the
        # interpreter within half a millisecond instead of the default five.
        interval = sys.getswitchinterval()
        sys.setswitchinterval(0.0005)
        started = time.perf_counter()
        try:
            __import__(self.module)
            self.state = "ready"
            ms = (time.perf_counter() - started) * 1000
            _log(f"{self.module} imported in the background in {ms:.0f}ms")
        except _Stopped:
            self.state = "stopped"
        except Exception as exc:  # a broken installation: a Flask function will report it
            absent = isinstance(exc, ImportError) and getattr(exc, "name", None) == self.module
            self.state = "absent" if absent else "failed"
            if not absent:
                _log(f"{self.module} does not import: {type(exc).__name__}: {exc}")
        finally:
            sys.setswitchinterval(interval)
            try:
                sys.meta_path.remove(self)
            except ValueError:
                pass
        if self.state == "absent":
            _log(f"{self.module} is not installed: def main() functions are called without it")
        elif self.state != "ready":
            self._forget()

    def _forget(self) -> None:
        """After an import cut short: importlib drops the modules whose code was interrupted, but
        keeps their finished submodules, which a re-import of the package would then not bind
        again (``module 'werkzeug' has no attribute 'utils'``). So everything this preload began
        is dropped, and any module left without its package, and the next import of Flask (by
        the function) starts clean. Finished standard-library modules stay: another thread may
        already hold them, and a second copy of ``logging`` or ``typing`` would split its state."""
        for name in self._started:
            module = sys.modules.get(name)
            if module is not None and _installed(module):
                sys.modules.pop(name, None)
        for name in list(sys.modules):
            parent = name.rpartition(".")[0]
            while parent and parent in sys.modules:
                parent = parent.rpartition(".")[0]
            if parent:
                sys.modules.pop(name, None)

    # A meta path finder that finds nothing: it only gets a say before each new module is imported.
    def find_spec(self, name: str, path: Any = None, target: Any = None) -> None:
        if threading.current_thread() is self._thread:
            if self._stop:
                raise _Stopped()
            self._started.append(name)
        return None


def _log(message: str) -> None:
    sys.stderr.write(f"[fizz] {message}\n")
    sys.stderr.flush()


def forget_shadowed(directory: str) -> None:
    """Before a package loads: when it brings its own copy of a library the preload imported
    (flask, werkzeug, jinja2, ...), every library the preload imported is dropped from sys.modules,
    so the package's copies, and the versions they need of the rest, are the ones imported."""
    third_party = [name for name, module in list(sys.modules.items()) if _installed(module)]
    tops = {name.partition(".")[0] for name in third_party}
    if any(
        os.path.isdir(os.path.join(directory, top)) or os.path.isfile(os.path.join(directory, top + ".py"))
        for top in tops
    ):
        for name in third_party:
            sys.modules.pop(name, None)


def _installed(module: Any) -> bool:
    path = getattr(module, "__file__", None) or ""
    return f"{os.sep}site-packages{os.sep}" in path or f"{os.sep}dist-packages{os.sep}" in path


class FlaskCompat:
    """On sys.meta_path for the instance's life: when ``flask`` is imported, by the preload or by
    the function, adds back ``escape`` and ``Markup`` where this Flask no longer has them. Any other
    module is left to the other finders after one string comparison."""

    def __init__(self) -> None:
        self._finding = False

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:
        if name != "flask" or self._finding:
            return None
        self._finding = True  # the import lock for "flask" is held: one thread at a time here
        try:
            import importlib.util

            spec = importlib.util.find_spec(name)
        finally:
            self._finding = False
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        spec.loader = _RestoringLoader(spec.loader)
        return spec


class _RestoringLoader:
    def __init__(self, loader: Any) -> None:
        self._loader = loader

    def __getattr__(self, name: str) -> Any:
        return getattr(self._loader, name)

    def create_module(self, spec: Any) -> Any:
        return self._loader.create_module(spec)

    def exec_module(self, module: Any) -> None:
        self._loader.exec_module(module)
        names = module.__dict__
        if "escape" not in names or "Markup" not in names:
            import markupsafe  # Flask's own dependency

            names.setdefault("escape", markupsafe.escape)
            names.setdefault("Markup", markupsafe.Markup)


def install_compat() -> None:
    sys.meta_path.insert(0, FlaskCompat())
