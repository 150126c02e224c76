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

# typing costs milliseconds of cold start; annotations are never evaluated (PEP 563).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Dict, Optional, Tuple

    Answer = Tuple[int, Dict[str, Any]]

# Used when the specialize body carries no concurrency (docs/api.md: python environments, 10).
DEFAULT_CONCURRENCY = 10


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
        self.max_body = _env_int("FIZZ_MAX_BODY_BYTES", 64 * 1024 * 1024)

        self.state = "warm"
        self.draining = False
        self.fn: Optional[Callable[..., Any]] = None
        self.takes_context = True
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
        if spec["instance_id"] and self.instance_id and spec["instance_id"] != self.instance_id:
            message = f"this is instance {self.instance_id}, not {spec['instance_id']}"
            return 421, error_payload("MISDIRECTED", message, retryable=True)
        with self._lock:
            refused = self.refusal()
            if refused:
                return refused
            self.state = "specializing"

        ref = spec["function"]
        label = f"{ref['namespace']}/{ref['name']}@{ref['revision']}"
        started = time.perf_counter()
        try:
            # The function's extra environment must be in place before its top-level code runs.
            os.environ.update(spec["env"])
            directory = self.workdir or _fresh_directory()
            fn, takes_context = fizz_loader.load_function(
                directory, spec["filename"], spec["code"], spec["entrypoint"]
            )
        except fizz_loader.LoadError as exc:
            self.state = "failed"
            log(f"{label} failed to load: {exc}")
            return 500, error_payload("FUNCTION_LOAD_FAILED", str(exc))
        except Exception as exc:
            self.state = "failed"
            log(f"{label}: specialize failed:\n{format_exc()}")
            return 500, error_payload("INTERNAL", f"specialize failed: {exc}", retryable=True)

        self.fn, self.takes_context, self.function = fn, takes_context, ref
        self.concurrency = spec["concurrency"]
        self.gate = Gate(spec["concurrency"], spec["concurrency"])
        self.state = "specialized"  # last: user traffic checks only this
        load_ms = round((time.perf_counter() - started) * 1000, 1)
        log(f"specialized {label} ({spec['filename']}) in {load_ms}ms")
        return 200, {"status": "specialized", "loadMs": load_ms}
