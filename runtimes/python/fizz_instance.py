"""The instance's state and its one-time specialization (docs/runtime-contract.md).

``state`` moves warm -> specializing -> specialized | failed, once. User traffic reads only
``state`` and the fields set before it becomes "specialized", so it needs no lock.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time

import fizz_loader
from fizz_invoke import CapturingStdout, Gate, error_payload
from fizz_preload import Preloader

# typing costs milliseconds of cold start; annotations are never evaluated (PEP 563).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Dict, List, Optional, Tuple

    Answer = Tuple[int, Dict[str, Any]]

# Used when the specialize body carries no concurrency (docs/api.md: python environments, 10).
DEFAULT_CONCURRENCY = 10
# The archive form's first line carries secrets and configmaps too, but never the code.
MAX_JSON_LINE_BYTES = 4 * 1024 * 1024
ARCHIVE_CONTENT_TYPE = "application/vnd.fizz.specialize+tar"


def log(message: str) -> None:
    sys.stderr.write(f"[fizz] {message}\n")
    sys.stderr.flush()


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "")
    if not raw:
        return default
    if not raw.isdigit():
        log(f"{name}={raw} is not a valid non-negative integer")
        sys.exit(2)
    return int(raw)


def _env_dir(name: str) -> Optional[str]:
    value = os.environ.get(name)
    return os.path.abspath(value) if value else None


def _fresh_directory() -> str:
    """mkdtemp without importing tempfile (slow to import): a private, unguessable directory."""
    base = os.environ.get("TMPDIR") or "/tmp"
    while True:
        path = os.path.join(base, "fizz-fn-" + os.urandom(8).hex())
        try:
            os.mkdir(path, 0o700)
            return path
        except FileExistsError:
            continue


def format_exc() -> str:
    import traceback  # error paths only

    return traceback.format_exc()


class Instance:
    def __init__(self) -> None:
        self.port = _env_int("PORT", 8888)
        self.host = os.environ.get("HOST") or "0.0.0.0"
        self.instance_id = os.environ.get("FIZZ_INSTANCE_ID") or None
        # Read once and dropped: the function's code (and anything it starts) must never see it.
        self.specialize_token = os.environ.pop("FIZZ_SPECIALIZE_TOKEN", "") or None
        workdir = os.environ.get("FIZZ_WORKDIR")
        self.workdir = os.path.abspath(workdir) if workdir else None
        self.secrets_dir = _env_dir("FIZZ_SECRETS_DIR")
        self.configs_dir = _env_dir("FIZZ_CONFIGS_DIR")
        self.max_body = _env_int("FIZZ_MAX_BODY_BYTES", 64 * 1024 * 1024)
        self.form_max = _env_int("FIZZ_FORM_MAX_BYTES", 1024 * 1024)
        self.max_package_bytes = _env_int("FIZZ_MAX_PACKAGE_BYTES", 2 * 1024 * 1024 * 1024)
        self.max_package_entries = _env_int("FIZZ_MAX_PACKAGE_ENTRIES", 100_000)

        self.state = "warm"
        self.draining = False
        self.fn: Optional[Callable[..., Any]] = None
        self.takes_context = True
        # A Flask-style function (fizz_flask.FlaskFunction): def main() with Flask installed.
        self.flask: Any = None
        self.preload = Preloader()
        self.function: Dict[str, Any] = {}
        self.concurrency = 0
        self.gate = Gate(1, 0)
        self.stdout = CapturingStdout(sys.stdout)
        self._lock = threading.Lock()
        self._busy = 0
        self._idle = threading.Condition()

    def public_state(self) -> str:
        return "warm" if self.state == "specializing" else self.state

    # In-flight requests, so a drain knows when it is done.
    def begin(self) -> None:
        with self._idle:
            self._busy += 1

    def end(self) -> None:
        with self._idle:
            self._busy -= 1
            if self._busy == 0:
                self._idle.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        with self._idle:
            return self._idle.wait_for(lambda: self._busy == 0, timeout)

    def authorized(self, given: Optional[str]) -> bool:
        """The specialize token, compared in constant time; none configured: anyone may."""
        if self.specialize_token is None:
            return True
        if given is None:
            return False
        import hmac  # specialize path only

        return hmac.compare_digest(given.encode("utf-8", "replace"), self.specialize_token.encode())

    def refusal(self) -> Optional[Answer]:
        """The 409 for a specialize after the first one, before its body is read."""
        if self.state == "warm":
            return None
        what = "failed to load its function" if self.state == "failed" else "is already specialized"
        message = f"this instance {what}; an instance is specialized once"
        return 409, error_payload("ALREADY_SPECIALIZED", message)

    def specialize(self, raw: bytes) -> Answer:
        try:
            body = json.loads(raw)
        except ValueError:
            return 400, error_payload("VALIDATION_FAILED", "body: must be JSON", field="body")
        try:
            spec = fizz_loader.validate(body, DEFAULT_CONCURRENCY)
        except fizz_loader.ValidationError as exc:
            return 400, error_payload("VALIDATION_FAILED", str(exc), field=exc.field)
        if spec["digest"] is not None:
            import hashlib  # specialize path only

            actual = "sha256:" + hashlib.sha256(spec["code"]).hexdigest()
            if actual != spec["digest"]:
                message = f"code: hashes to {actual}, not {spec['digest']}; not loaded"
                return 400, error_payload("DIGEST_MISMATCH", message, field="digest")
        refused = self._misdirected(spec) or self._claim()
        if refused:
            return refused
        try:
            directory = self.workdir or _fresh_directory()
            os.makedirs(directory, mode=0o700, exist_ok=True)
        except OSError as exc:
            return self._broken(spec, exc)
        filename, code, entrypoint = spec["filename"], spec["code"], spec["entrypoint"]

        def load() -> Tuple[Callable[..., Any], bool]:
            return fizz_loader.load_function(directory, filename, code, entrypoint)

        return self._activate(spec, directory, directory, filename, load)

    def specialize_archive(self, body: Any) -> Tuple[int, Dict[str, Any], bool]:
        """The archive form: ``body`` is a fizz_archive.BodyStream. Returns the answer and whether
        the connection must close (the body was not read to its end)."""
        import fizz_archive  # archive path only: tarfile stays off the cold-start path
        from fizz_invoke import HttpError

        try:
            line = body.readline(MAX_JSON_LINE_BYTES)
        except HttpError as exc:
            field = "body" if exc.code == "VALIDATION_FAILED" else None
            return exc.status, error_payload(exc.code, str(exc), field=field), exc.close
        try:
            spec = fizz_loader.validate_archive(json.loads(line), DEFAULT_CONCURRENCY)
        except ValueError:
            message = "body: the first line must be JSON"
            return 400, error_payload("VALIDATION_FAILED", message, field="body"), True
        except fizz_loader.ValidationError as exc:
            return 400, error_payload("VALIDATION_FAILED", str(exc), field=exc.field), True
        refused = self._misdirected(spec) or self._claim()
        if refused:
            return (*refused, True)
        try:
            workdir = self.workdir or _fresh_directory()
            os.makedirs(workdir, mode=0o700, exist_ok=True)
        except OSError as exc:
            return (*self._broken(spec, exc), True)
        directory = os.path.join(workdir, "fn")

        def back_to_warm(answer: Answer, close: bool = False) -> Tuple[int, Dict[str, Any], bool]:
            import shutil  # error path only

            shutil.rmtree(directory, ignore_errors=True)
            self.state = "warm"
            return (*answer, close)

        try:
            body.start_hash()
            refusal, files = fizz_archive.receive(
                body, directory, self.max_package_bytes, self.max_package_entries
            )
        except FileExistsError:
            self.state = "warm"  # not ours to remove: something was extracted here before
            message = "this instance's fn/ directory already exists; an instance is specialized once"
            return 409, error_payload("ALREADY_SPECIALIZED", message), True
        except HttpError as exc:
            return back_to_warm((exc.status, error_payload(exc.code, str(exc))), exc.close)
        digest = body.digest()
        if digest != spec["digest"]:
            message = f"archive: hashes to {digest}, not {spec['digest']}; not loaded"
            return back_to_warm((400, error_payload("DIGEST_MISMATCH", message, field="digest")))
        if isinstance(refusal, fizz_archive.ArchiveUnsafe):
            return back_to_warm((400, error_payload("ARCHIVE_UNSAFE", str(refusal), field="archive")))
        if refusal is not None:
            log(f"specialize failed: {refusal}")
            message = f"specialize failed: {refusal}"
            return back_to_warm((500, error_payload("INTERNAL", message, retryable=True)))

        def load() -> Tuple[Callable[..., Any], bool]:
            import fizz_package  # archive path only
            from fizz_preload import forget_shadowed

            forget_shadowed(directory)  # a package's own Flask (or Jinja, ...) wins over the preload's
            # Relative paths in the package (templates, data files) resolve from the package.
            os.chdir(directory)
            return fizz_package.load_package(directory, spec["entrypoint"])

        return (*self._activate(spec, workdir, directory, f"package, {files} files", load), False)

    def _misdirected(self, spec: Dict[str, Any]) -> Optional[Answer]:
        if spec["instance_id"] and self.instance_id and spec["instance_id"] != self.instance_id:
            message = f"this is instance {self.instance_id}, not {spec['instance_id']}"
            return 421, error_payload("MISDIRECTED", message, retryable=True)
        return None

    def _claim(self) -> Optional[Answer]:
        """warm -> specializing, or the 409 when another specialize got there first."""
        with self._lock:
            refused = self.refusal()
            if refused:
                return refused
            self.state = "specializing"
        # From here on the function's needs come first: the Flask preload ends at its next import.
        self.preload.stop()
        return None

    def _broken(self, spec: Dict[str, Any], exc: Exception) -> Answer:
        self.state = "failed"
        log(f"specialize failed: no work directory: {exc}")
        return 500, error_payload("INTERNAL", f"specialize failed: {exc}", retryable=True)

    def _activate(
        self,
        spec: Dict[str, Any],
        workdir: str,
        code_dir: str,
        what: str,
        load: Callable[[], Tuple[Callable[..., Any], bool]],
    ) -> Answer:
        """The end of every specialize, once the code is in place and checked: secrets and
        configmaps as files, the function's environment, then its code."""
        ref = spec["function"]
        label = f"{ref['namespace']}/{ref['name']}@{ref['revision']}"
        started = time.perf_counter()
        try:
            secrets_dir = self.secrets_dir or os.path.join(workdir, "secrets")
            configs_dir = self.configs_dir or os.path.join(workdir, "configs")
            fizz_loader.write_config_files(secrets_dir, ref["namespace"], spec["secrets"])
            fizz_loader.write_config_files(configs_dir, ref["namespace"], spec["configmaps"])
            # The function's environment must be in place before its top-level code runs; the
            # directories last, so that `env` cannot point them elsewhere.
            os.environ.update(spec["env"])
            os.environ["FIZZ_SECRETS_DIR"] = secrets_dir
            os.environ["FIZZ_CONFIGS_DIR"] = configs_dir
            # The modules there before the function's code ran (held, so no id is reused): only
            # the others can be the function's, and only they are looked at for Flask.
            earlier = list(sys.modules.values())
            fn, takes_context = load()
            flask_fn = None if takes_context else self._flask_function(fn, code_dir, earlier)
        except fizz_loader.LoadError as exc:
            self.state = "failed"
            log(f"{label} failed to load: {exc}")
            return 500, error_payload("FUNCTION_LOAD_FAILED", str(exc))
        except Exception as exc:
            self.state = "failed"
            log(f"{label}: specialize failed:\n{format_exc()}")
            return 500, error_payload("INTERNAL", f"specialize failed: {exc}", retryable=True)

        self.fn, self.takes_context, self.function, self.flask = fn, takes_context, ref, flask_fn
        self.concurrency = spec["concurrency"]
        self.gate = Gate(spec["concurrency"], spec["concurrency"])
        self.state = "specialized"  # last: user traffic checks only this
        load_ms = round((time.perf_counter() - started) * 1000, 1)
        what += ", Flask" if flask_fn is not None else ""
        log(f"specialized {label} ({what}) in {load_ms}ms")
        return 200, {"status": "specialized", "loadMs": load_ms}

    def _flask_function(self, fn: Callable[..., Any], code_dir: str, earlier: List[Any]) -> Any:
        """A ``def main()`` runs as in Fission's Flask environment (fizz_flask) when its code uses
        Flask, and as a plain call otherwise. Opt-in by import, not "any zero-argument main": a
        function written for Fizz before Flask mode existed keeps its answers (a returned str
        stays text/plain rather than turning into text/html, which would make an echo an XSS
        hole on upgrade), and whether Flask happens to be installed changes nothing for it."""
        if self.preload.state == "absent" or not _uses_flask(code_dir, earlier):
            return None
        import fizz_flask

        name = getattr(fn, "__module__", None) or "main"
        if name == fizz_loader.MODULE_NAME:  # a private name: the app is named after the file
            file = getattr(sys.modules.get(name), "__file__", None) or "main.py"
            name = os.path.splitext(os.path.basename(file))[0]
        try:
            return fizz_flask.FlaskFunction(fn, name, code_dir, self.max_body, self.form_max)
        except ImportError as exc:
            if getattr(exc, "name", None) == "flask":
                return None
            raise fizz_loader.LoadError(f"flask does not import: {exc}") from None


_FLASK_MODULES = ("flask", "werkzeug")


def _uses_flask(code_dir: str, earlier: List[Any]) -> bool:
    """Whether a module loaded from the function's code refers to Flask or Werkzeug at top level
    (``import flask``, ``from flask import request``, ``from werkzeug... import ...``): the modules
    of a package count too, so a handler importing ``request`` through a helper module is seen.
    ``earlier``: sys.modules' modules before the code loaded, none of which can be the code's."""
    # A string comparison, no realpath: the function's modules were loaded by paths built from
    # code_dir itself, and resolving ~300 module paths costs ~7 ms of every def main()'s cold start.
    # Only modules that are new since: reading __file__ on all ~280 (Flask preloaded) cost
    # ~0.4-0.6 ms of a def main()'s specialize, most of it cache misses on objects nothing touched since.
    root = os.path.join(os.path.abspath(code_dir), "")
    known = {id(module) for module in earlier}
    for module in list(sys.modules.values()):
        if id(module) in known:
            continue
        file = getattr(module, "__file__", None)
        if not isinstance(file, str) or not file.startswith(root):
            continue
        for value in list(vars(module).values()):
            if _is_flask_thing(value):
                return True
    return False


def _is_flask_thing(value: Any) -> bool:
    """Only the type, a module's name, or a function's or class's own ``__module__`` are read:
    ``request`` is a Werkzeug proxy, and any other attribute read on it outside a request raises."""
    try:
        if _flask_name(type(value).__module__):
            return True
        if isinstance(value, type(sys)):
            return _flask_name(value.__name__)
        if isinstance(value, (type, type(_flask_name))):
            return _flask_name(value.__module__)
    except Exception:  # a module global with odd attributes is simply not Flask
        return False
    return False


def _flask_name(name: Any) -> bool:
    return isinstance(name, str) and name.split(".", 1)[0] in _FLASK_MODULES
