"""Fission's Flask-style functions (docs/runtime-contract.md, Python): a ``def main()`` is called
inside a Flask request context built from the request this instance received, and its return value
becomes the response through Flask's own ``make_response``, as in Fission's Python environment.

Imported only at the specialization of such a function. One Flask app per instance, created then;
each call pushes its own request context and pops it before the next call can see anything.
"""

from __future__ import annotations

import io
import sys
from urllib.parse import unquote_to_bytes, urlsplit

from fizz_invoke import ResultError, check_header, free_slot

# typing costs milliseconds of cold start; annotations are never evaluated (PEP 563).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple

_FRAMING_HEADERS = {"content-length", "transfer-encoding", "connection"}


class FlaskFunction:
    def __init__(
        self, fn: Callable[[], Any], import_name: str, root_path: str, max_body: int, form_max: int
    ) -> None:
        import flask
        from werkzeug.exceptions import HTTPException

        # No static folder: every path is the function's, as every path was the function's view in
        # Fission; root_path makes render_template look in the function's own templates/.
        # instance_path given: Flask would otherwise look the name up as an importable module.
        app = flask.Flask(
            import_name, root_path=root_path, instance_path=root_path, static_folder=None
        )
        app.config["MAX_CONTENT_LENGTH"] = max_body
        app.config["MAX_FORM_MEMORY_SIZE"] = form_max  # Flask 3.1 reads these; 2.2 the class below
        app.config["MAX_FORM_PARTS"] = FORM_MAX_PARTS
        app.request_class = _bounded_request(flask.Request, form_max)
        self.app = app
        self.fn = fn
        self._http_exception = HTTPException
        self._request = flask.request

    def request_context(self, environ: Dict[str, Any]) -> Any:
        return self.app.request_context(environ)

    def run(self) -> Any:
        """Calls the function in the current request context: its Response, or None when it
        returned None (the caller then answers with what it printed). abort() and any other
        HTTPException answer as Flask answers them; other exceptions propagate."""
        try:
            rv = self.fn()
        except self._http_exception as exc:
            rv = exc.get_response(self._request.environ)
        else:
            if rv is None:
                return None
        try:
            response = self.app.make_response(rv)
        except (TypeError, ValueError) as exc:  # Flask's words for a return it cannot answer with
            raise ResultError(str(exc)) from None
        # after_request hooks (after_this_request) and the session, as Flask finishes a request.
        return self.app.process_response(response)


FORM_MAX_PARTS = 1000


def _bounded_request(base: Any, form_max: int) -> Any:
    """Werkzeug 2.2 (Debian's) parses an urlencoded form at about a second of CPU per MiB of
    ``a&a&...`` and has no limit of its own on it, so one request could hold the instance. Forms
    over ``form_max`` bytes or FORM_MAX_PARTS parameters answer 413, as Flask 3.1 and Fission's
    Express parser do, checked with a byte count at C speed before Werkzeug looks at the body;
    ``request.get_data()`` still gives the whole body to a function that wants it."""
    from werkzeug.exceptions import RequestEntityTooLarge

    class BoundedRequest(base):  # type: ignore[misc, valid-type]
        max_form_memory_size = form_max
        max_form_parts = FORM_MAX_PARTS

        def _load_form_data(self) -> None:
            if "form" not in self.__dict__ and self.mimetype == "application/x-www-form-urlencoded":
                data = self.get_data(cache=True)
                if len(data) > form_max or data.count(b"&") >= FORM_MAX_PARTS:
                    raise RequestEntityTooLarge(
                        f"a form is at most {form_max} bytes and {FORM_MAX_PARTS} parameters"
                        " (FIZZ_FORM_MAX_BYTES); request.get_data() holds the raw body"
                    )
            super()._load_form_data()

    return BoundedRequest


def build_environ(handler: Any, body: bytes) -> Dict[str, Any]:
    """A WSGI environ (PEP 3333) for the request ``handler`` (http.server) received; the body was
    already read, and bounded, by the runtime."""
    target = handler.path
    if target.startswith("/"):
        path, _, query = target.partition("?")
    else:  # absolute-form ("http://host/p?q") or "*"
        parts = urlsplit(target)
        path, query = parts.path or "/", parts.query
    host, port = handler.server.server_address[:2]
    peer = handler.client_address
    environ: Dict[str, Any] = {
        "REQUEST_METHOD": handler.command,
        "SCRIPT_NAME": "",
        # PEP 3333: the decoded path's bytes as a latin-1 string; Werkzeug decodes it as UTF-8.
        "PATH_INFO": unquote_to_bytes(path).decode("latin-1"),
        "QUERY_STRING": query,
        "REQUEST_URI": target,
        "RAW_URI": target,
        "SERVER_NAME": str(host),
        "SERVER_PORT": str(port),
        "SERVER_PROTOCOL": handler.request_version,
        "SERVER_SOFTWARE": "fizz-python",
        "REMOTE_ADDR": str(peer[0]) if peer else "",
        "REMOTE_PORT": str(peer[1]) if peer and len(peer) > 1 else "",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(body),
        "wsgi.input_terminated": True,
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
    }
    declared_body = False
    for name, value in handler.headers.items():
        # "X_Fizz_Params_id" would become HTTP_X_FIZZ_PARAMS_ID, indistinguishable from the
        # gateway's X-Fizz-Params-id, which the gateway strips from clients only in its dashed
        # spelling. Dropped, as Werkzeug's and gunicorn's servers drop them.
        if "_" in name:
            continue
        key = name.upper().replace("-", "_")
        if key in ("CONTENT_LENGTH", "TRANSFER_ENCODING"):
            declared_body = True  # the body was de-chunked and measured: its length is below
            continue
        if key == "CONTENT_TYPE":
            environ.setdefault("CONTENT_TYPE", value)
            continue
        key = "HTTP_" + key
        if key in environ:
            environ[key] += ("; " if key == "HTTP_COOKIE" else ", ") + value
        else:
            environ[key] = value
    if body or declared_body:
        environ["CONTENT_LENGTH"] = str(len(body))
    _apply_forwarded(environ)
    return environ


def _apply_forwarded(environ: Dict[str, Any]) -> None:
    """The gateway is the one proxy in front of the instance (its port is reachable from the
    platform only): what the client used, as Werkzeug's ProxyFix with one proxy gives it."""
    forwarded_host = environ.get("HTTP_X_FORWARDED_HOST", "").split(",")[0].strip()
    if forwarded_host:
        environ["HTTP_HOST"] = forwarded_host
    proto = environ.get("HTTP_X_FORWARDED_PROTO", "").split(",")[0].strip().lower()
    if proto in ("http", "https"):
        environ["wsgi.url_scheme"] = proto
    client = environ.get("HTTP_X_FORWARDED_FOR", "").split(",")[-1].strip()
    if client:
        environ["REMOTE_ADDR"] = client


def response_parts(
    response: Any, environ: Dict[str, Any]
) -> Tuple[int, str, List[Tuple[str, str]], Optional[bytes], Iterable[bytes]]:
    """status, reason, headers, then the body: bytes, or None and the chunks of a streamed body.
    Framing headers are the runtime's; a header or status that could break the response is a
    ResultError."""
    status = response.status_code
    if not isinstance(status, int) or not 200 <= status <= 599:
        raise ResultError(f"invalid status {status!r}: must be an integer between 200 and 599")
    reason = response.status.partition(" ")[2]
    if any(not " " <= c <= "~" for c in reason):
        raise ResultError(f"invalid status text {reason!r}")
    headers = [
        check_header(name, value)
        for name, value in response.get_wsgi_headers(environ).to_wsgi_list()
        if name.lower() not in _FRAMING_HEADERS
    ]
    if response.is_streamed:
        return status, reason, headers, None, response.get_app_iter(environ)
    # The whole body even for HEAD, so that its Content-Length is the GET's.
    return status, reason, headers, b"".join(response.iter_encoded()), ()


def call_flask(handler: Any, rt: Any, body: bytes, request_id: str) -> None:
    """One call of a Flask-style function, answered on ``handler`` (fizz_server.Handler). The
    request context is popped before this returns, whatever happened: nothing of this request is
    left for the next one."""
    from fizz_instance import format_exc, log
    from fizz_invoke import to_response

    flask_fn = rt.flask
    environ = build_environ(handler, body)
    with flask_fn.request_context(environ):
        rt.stdout.start()
        try:
            response = flask_fn.run()
        except ResultError as exc:
            rt.stdout.stop()
            log(f"bad return value (request {request_id}): {exc}")
            return handler._error(500, "FUNCTION_ERROR", str(exc))
        except (Exception, SystemExit) as exc:
            rt.stdout.stop()
            log(f"function error (request {request_id}):\n{format_exc()}")
            return handler._error(500, "FUNCTION_ERROR", f"{type(exc).__name__}: {exc}")
        printed = rt.stdout.stop()
        if response is None:  # our contract, not Flask's: a None return answers what was printed
            return handler._send(*to_response(None, printed))
        try:
            status, reason, headers, payload, chunks = response_parts(response, environ)
        except ResultError as exc:
            response.close()
            log(f"bad return value (request {request_id}): {exc}")
            return handler._error(500, "FUNCTION_ERROR", str(exc))
        if payload is not None:
            response.close()  # call_on_close callbacks, as a WSGI server runs them
            return handler._send(status, headers, payload, reason=reason)
        try:
            _stream(handler, status, reason, headers, chunks)
        except (BrokenPipeError, ConnectionResetError):
            raise
        except (Exception, SystemExit):
            # The status line is gone: the client sees a body cut short (no last chunk).
            handler.close_connection = True
            log(f"function error while streaming (request {request_id}):\n{format_exc()}")
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()


def _stream(handler: Any, status: int, reason: str, headers: List[Tuple[str, str]], chunks: Any) -> None:
    """A streamed body (a generator the function returned): chunked, each piece on the wire as
    soon as the function yields it (server-sent events work)."""
    handler.send_response(status, reason or None)
    for name, value in headers:
        handler.send_header(name, value)
    bodyless = handler.command == "HEAD" or status in (204, 304)
    chunked = status not in (204, 304) and handler.request_version != "HTTP/1.0"
    close = handler.instance.draining or (not handler._body_read and handler._has_body())
    if chunked:
        handler.send_header("Transfer-Encoding", "chunked")
    elif not bodyless:
        close = True  # an HTTP/1.0 client: the body ends where the connection does
    if close:
        handler.send_header("Connection", "close")
    if bodyless:
        free_slot()  # the head is the whole answer
    handler.end_headers()
    if bodyless:
        handler.wfile.flush()
        return
    out = handler.wfile
    for chunk in chunks:
        if chunk:
            out.write(b"%x\r\n%s\r\n" % (len(chunk), chunk) if chunked else chunk)
            out.flush()
    free_slot()  # the answer's last write is next (or, for HTTP/1.0, the close)
    if chunked:
        out.write(b"0\r\n\r\n")
