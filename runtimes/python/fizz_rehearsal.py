"""A pool instance's rehearsal of a cold start, run before it announces readiness (fizz_readiness),
so that what a process does for the first time is not done inside the first specialize and call.

CPython has no JIT, but its first time through a path is still slow: the bytecode compiler's
first compile() in a process cost ~2 ms where the next cost ~0.1 (its code and tables paged in
and warmed; a Flask import compiles nothing, it loads bytecode), Flask's request path ran cold,
and fizz_flask was imported inside the specialize. Measured per sample from /proc
(docs/architecture.md, "Pool instances are idle when they say so"). The rehearsal touches
nothing the function will see: no file, no environment variable, no module of its own in
sys.modules, no request the instance counts; only the server's own /healthz over loopback.
Any failure here is logged and the instance announces anyway: it only makes the first call slower.

Only where FIZZ_WARM_UP is not 0: an instance a specialize already waits for skips it.
"""

from __future__ import annotations

import base64
import json
import socket
import sys

import fizz_loader
from fizz_instance import DEFAULT_CONCURRENCY, log

# typing costs milliseconds of cold start; annotations are never evaluated (PEP 563).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Tuple

# Shaped like the functions people deploy: a Fission-style main() reading Flask's request, and
# main(context). Compiled and run in a throwaway namespace, never imported as a module.
_SOURCE = (
    "import os\n"
    "\n"
    "def main(context=None):\n"
    '    """A docstring."""\n'
    '    name = context.query.get("name", "world") if context else "world"\n'
    '    return {"message": f"Hello, {name}!", "n": [1, 2.5, None, True]}\n'
)


def rehearse(
    address: Tuple[Any, ...], flask_ready: bool, stopping: Callable[[], bool]
) -> None:
    """Runs each step unless ``stopping()``: a specialize that came before the announcement waits
    for the step in progress only (each is well under a millisecond once warm)."""
    for step in (_compile, _specialize_body, _flask if flask_ready else None, _probe):
        if step is None or stopping():
            continue
        try:
            step(address)
        except Exception as exc:  # a rehearsal must never keep an instance from serving
            log(f"rehearsal step {step.__name__} failed: {type(exc).__name__}: {exc}")


def _compile(_address: Any) -> None:
    namespace: dict = {"__name__": "fizz_rehearsal_function"}
    exec(compile(_SOURCE.encode(), "<fizz-rehearsal>", "exec", dont_inherit=True), namespace)
    fizz_loader.takes_context(namespace["main"], "rehearsal.py", "main")
    namespace["main"]()


def _specialize_body(_address: Any) -> None:
    """The body's checks, as a specialize runs them: JSON, validation (regular expressions,
    base64), the digest and the token comparison."""
    import hashlib
    import hmac

    code = _SOURCE.encode()
    digest = "sha256:" + hashlib.sha256(code).hexdigest()
    body = {
        "instanceId": "rehearsal",
        "function": {"namespace": "default", "name": "rehearsal", "revision": 1},
        "filename": "rehearsal.py",
        "code": base64.b64encode(code).decode(),
        "digest": digest,
        "env": {"REHEARSAL": "1"},
        "secrets": {},
        "configmaps": {"c": {"k": base64.b64encode(b"v").decode()}},
    }
    spec = fizz_loader.validate(json.loads(json.dumps(body)), DEFAULT_CONCURRENCY)
    hmac.compare_digest(digest.encode(), spec["digest"].encode())
    json.dumps({"status": "specialized", "loadMs": 1.5}, separators=(",", ":")).encode()


def _flask(_address: Any) -> None:
    """A Flask function's specialize and first call on a throwaway app: fizz_flask's import, the
    app's creation, a request context, make_response and the WSGI answer."""
    import fizz_flask
    from flask import request

    def main() -> Any:
        return "Hello, " + request.args.get("name", "world") + "!\n"

    app = fizz_flask.FlaskFunction(main, "fizz_rehearsal", "/nonexistent", 1024, 1024)
    environ = {
        "REQUEST_METHOD": "GET",
        "SCRIPT_NAME": "",
        "PATH_INFO": "/",
        "QUERY_STRING": "name=rehearsal",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8888",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "HTTP_HOST": "localhost",
        "HTTP_X_REQUEST_ID": "rehearsal",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.input": _EmptyInput(),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
        "wsgi.input_terminated": True,
    }
    with app.request_context(environ):
        response = app.run()
        if response is not None:
            fizz_flask.response_parts(response, environ)
            response.close()


class _EmptyInput:
    def read(self, *_args: Any) -> bytes:
        return b""

    def readline(self, *_args: Any) -> bytes:
        return b""


def _probe(address: Tuple[Any, ...]) -> None:
    """One GET /healthz through the server itself: a connection thread's set-up, the request
    parse (http.server's header parser is the email package's) and an answer's write. Uncounted:
    a probe is not user traffic."""
    host, port = address[0], address[1]
    if host in ("0.0.0.0", ""):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    with socket.create_connection((host, port), timeout=2) as sock:
        sock.sendall(
            b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Request-Id: rehearsal\r\n"
            b"Content-Type: application/json\r\nConnection: close\r\n\r\n"
        )
        while sock.recv(4096):  # to the end: the server closes after its answer
            pass
