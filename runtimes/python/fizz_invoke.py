"""One call of the user's function: request -> context, return value -> response, plus the pieces
that make calls safe to run side by side (admission gate, per-thread stdout capture)."""

from __future__ import annotations

import json
import re
import threading
from urllib.parse import parse_qs

# typing costs milliseconds of cold start; annotations are never evaluated (PEP 563).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Dict, List, Optional, Tuple

PARAM_PREFIX = "x-fizz-params-"
_HEX = re.compile(rb"^[0-9A-Fa-f]{1,16}$")
# fullmatch, not match with "$": "$" also matches before a trailing newline ("X-Evil\n").
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
# Framing is the runtime's job: a function-supplied length or encoding would corrupt the response.
_FRAMING_HEADERS = {"content-length", "transfer-encoding"}


class HttpError(Exception):
    """A request the runtime answers itself (400 / 413); ``close`` when the connection's framing
    can no longer be trusted."""

    def __init__(self, status: int, code: str, message: str, close: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.close = close


class InvalidBody(HttpError, ValueError):
    """Raised by ``context.json()``; if the function lets it escape the call answers 400."""

    def __init__(self, message: str) -> None:
        super().__init__(400, "INVALID_BODY", message)


class ResultError(Exception):
    """The function returned something that cannot be turned into a response."""


class Context:
    """What the function sees (docs/runtime-contract.md, Python)."""

    __slots__ = (
        "method", "url", "path", "query", "headers", "body", "params", "request_id", "function", "_json"
    )

    def __init__(
        self,
        method: str,
        url: str,
        headers: Dict[str, str],
        params: Dict[str, str],
        body: bytes,
        request_id: str,
        function: Dict[str, Any],
    ) -> None:
        path, _, query = url.partition("?")
        self.method = method
        self.url = url
        self.path = path
        self.query = {k: v[0] for k, v in parse_qs(query, keep_blank_values=True).items()}
        self.headers = headers
        self.body = body
        self.params = params
        self.request_id = request_id
        self.function = function
        self._json: Any = _UNSET

    def text(self) -> str:
        charset = "utf-8"
        for part in self.headers.get("content-type", "").split(";")[1:]:
            key, _, value = part.strip().partition("=")
            if key.lower() == "charset" and value:
                charset = value.strip('"')
        try:
            return self.body.decode(charset, errors="replace")
        except LookupError:
            return self.body.decode("utf-8", errors="replace")

    def json(self) -> Any:
        """The body parsed as JSON (None for an empty body); InvalidBody when it is not JSON."""
        if self._json is _UNSET:
            if not self.body:
                self._json = None
            else:
                try:
                    self._json = json.loads(self.body)
                except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
                    raise InvalidBody(f"invalid JSON body: {exc}") from None
        return self._json

    def __repr__(self) -> str:
        return f"<Context {self.method} {self.url} request_id={self.request_id}>"


_UNSET = object()


class Gate:
    """The instance's own hard concurrency limit: ``limit`` calls run, up to ``queue_max`` wait,
    the rest are refused (429). Holds even when the gateways' lease accounting is wrong.

    A waiter takes a freed slot and leaves the queue under one lock: with a semaphore beside a
    waiting count, a waiter descheduled between the two held the slot while its queue place still
    counted, and a call its client sent the moment the running call's answer arrived met a full
    queue (429) though one call ran and none waited."""

    def __init__(self, limit: int, queue_max: int) -> None:
        self.limit = limit
        self._cond = threading.Condition(threading.Lock())
        self._running = 0
        self._waiting = 0
        self._queue_max = queue_max

    def enter(self) -> bool:
        with self._cond:
            if self._running < self.limit:
                self._running += 1
                return True
            if self._waiting >= self._queue_max:
                return False
            self._waiting += 1
            try:
                while self._running >= self.limit:
                    self._cond.wait()
            finally:
                self._waiting -= 1
            self._running += 1
            return True

    def leave(self) -> None:
        with self._cond:
            if self._running <= 0:
                raise ValueError("Gate.leave without a matching enter")
            self._running -= 1
            self._cond.notify()


_SLOT = threading.local()


def hold_slot(gate: Gate) -> None:
    """The call this thread serves holds a slot of ``gate`` until free_slot."""
    _SLOT.gate = gate


def free_slot() -> None:
    """Frees this thread's call slot once (later calls do nothing): right before the answer's
    last write, so the slot is free by the time the client has the answer. Freed after it, a
    client that sends its next call at once (the gateway does, on another kept-alive connection)
    could meet the slot still taken and be queued or refused with 429 for nothing."""
    gate = getattr(_SLOT, "gate", None)
    if gate is not None:
        _SLOT.gate = None
        gate.leave()


class CapturingStdout:
    """Replacement for ``sys.stdout``: everything reaches the real stdout (the function's log), and
    while a thread is capturing, that thread's writes are also kept for its response.

    contextlib.redirect_stdout swaps a process-wide global and would mix the output of concurrent
    calls; a thread-local buffer keeps each call's output to itself. Output from threads the
    function starts itself is logged but not captured."""

    def __init__(self, real: Any) -> None:
        self._real = real
        self._local = threading.local()

    def start(self) -> None:
        self._local.parts = []

    def stop(self) -> str:
        parts: Optional[List[str]] = getattr(self._local, "parts", None)
        self._local.parts = None
        return "".join(parts or ())

    def write(self, text: str) -> int:
        parts = getattr(self._local, "parts", None)
        if parts is not None:
            parts.append(text)
        return self._real.write(text)

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        self._real.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


def request_headers(items: List[Tuple[str, str]]) -> Tuple[Dict[str, str], Dict[str, str]]:
    """Lower-cased headers (repeated ones joined with ", ") and the route parameters. Parameter
    names keep the case the gateway sent."""
    headers: Dict[str, str] = {}
    params: Dict[str, str] = {}
    for name, value in items:
        key = name.lower()
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
        if key.startswith(PARAM_PREFIX) and len(key) > len(PARAM_PREFIX):
            params[name[len(PARAM_PREFIX):]] = value
    return headers, params


def read_body(rfile: Any, headers: Dict[str, str], limit: int) -> bytes:
    """Reads the whole body (Content-Length or chunked). http.server does neither by itself, and
    an unread body would be parsed as the next request on a kept-alive connection."""
    if "chunked" in headers.get("transfer-encoding", "").lower():
        return _read_chunked(rfile, limit)
    declared = headers.get("content-length")
    if declared is None:
        return b""
    try:
        length = int(declared)
        if length < 0:
            raise ValueError
    except ValueError:
        raise HttpError(400, "INVALID_BODY", "invalid Content-Length", close=True) from None
    if length > limit:
        raise HttpError(413, "PAYLOAD_TOO_LARGE", f"request body exceeds {limit} bytes", close=True)
    data = rfile.read(length)
    if len(data) < length:
        raise HttpError(400, "INVALID_BODY", "request body was cut short", close=True)
    return data


def _read_chunked(rfile: Any, limit: int) -> bytes:
    parts: List[bytes] = []
    size = 0
    while True:
        size_field = rfile.readline(1026).split(b";", 1)[0].strip()
        if not _HEX.match(size_field):
            raise HttpError(400, "INVALID_BODY", "malformed chunked body", close=True)
        chunk = int(size_field, 16)
        if chunk == 0:
            break
        size += chunk
        if size > limit:
            raise HttpError(413, "PAYLOAD_TOO_LARGE", f"request body exceeds {limit} bytes", close=True)
        data = rfile.read(chunk)
        if len(data) < chunk or rfile.readline(3) not in (b"\r\n", b"\n"):
            raise HttpError(400, "INVALID_BODY", "malformed chunked body", close=True)
        parts.append(data)
    while rfile.readline(65537) not in (b"\r\n", b"\n", b""):
        pass  # trailers: nothing uses them
    return b"".join(parts)


def to_response(result: Any, printed: str) -> Tuple[int, List[Tuple[str, str]], bytes]:
    """status, headers, body for a return value (docs/runtime-contract.md, Python)."""
    status = 200
    headers: Any = None
    body = result
    if isinstance(result, tuple):
        if len(result) not in (2, 3):
            raise ResultError("a tuple return must be (body, status) or (body, status, headers)")
        body, status = result[0], result[1]
        headers = result[2] if len(result) == 3 else None
        if not isinstance(status, int) or isinstance(status, bool) or not 200 <= status <= 599:
            raise ResultError(f"invalid status {status!r}: must be an integer between 200 and 599")

    out: List[Tuple[str, str]] = []
    if headers is not None:
        if not isinstance(headers, dict):
            raise ResultError("headers must be a dict")
        for name, value in headers.items():
            if value is None:
                continue
            for item in value if isinstance(value, (list, tuple)) else (value,):
                out.append(check_header(name, item))
    out = [(k, v) for k, v in out if k.lower() not in _FRAMING_HEADERS]

    if body is None:
        content_type, payload = "text/plain; charset=utf-8", printed.encode("utf-8")
    elif isinstance(body, str):
        content_type, payload = "text/plain; charset=utf-8", body.encode("utf-8")
    elif isinstance(body, (bytes, bytearray, memoryview)):
        content_type, payload = "application/octet-stream", bytes(body)
    elif isinstance(body, (dict, list)):
        try:
            text = json.dumps(body, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise ResultError(f"the returned body is not JSON-serializable: {exc}") from None
        content_type, payload = "application/json; charset=utf-8", text.encode("utf-8")
    else:
        raise ResultError(
            f"unsupported return type {type(body).__name__}: return str, bytes, dict, list, a tuple or None"
        )
    if not any(k.lower() == "content-type" for k, _ in out):
        out.append(("Content-Type", content_type))
    return status, out, payload


def check_header(name: Any, value: Any) -> Tuple[str, str]:
    # http.server writes header lines verbatim: refuse anything that could split the response.
    if not isinstance(name, str) or not _HEADER_NAME.fullmatch(name):
        raise ResultError(f"invalid header name {name!r}")
    text = str(value)
    if any(c in text for c in "\r\n\0"):
        raise ResultError(f"invalid value for header {name!r}: contains a line break or NUL")
    return name, text


def error_payload(
    code: str, message: str, retryable: bool = False, field: Optional[str] = None
) -> Dict[str, Any]:
    """The platform's error shape: {"error": {"code", "message", "retryable", "field"?}}."""
    error: Dict[str, Any] = {"code": code, "message": message, "retryable": retryable}
    if field is not None:
        error["field"] = field
    return {"error": error}
