"""Fizz environment loader for Python functions; the contract is docs/runtime-contract.md.
Started as ``python3 server.py``; this module holds the HTTP side (server.py stays a two-line
script because a script is compiled on every start, while this module loads from cached bytecode).

The process starts generic ("warm"), is specialized exactly once with one function revision, and
from then on serves only that function. Standard library only: it is also the cold-start path when
the pool is empty.

Trust: POST /v2/specialize needs the token the poolkeeper gave this process at start
(FIZZ_SPECIALIZE_TOKEN, removed from os.environ before any user code runs), so another function that
finds this port cannot load its own code here; and the code must hash to the digest it came with.
Once specialized, a second specialize is refused, so the function cannot be swapped underneath its
traffic. Invocations are not authenticated: the port must only be reachable from the platform
(loopback and per-uid isolation, or a NetworkPolicy).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import socketserver
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from fizz_instance import ARCHIVE_CONTENT_TYPE, Instance, format_exc, log
from fizz_markers import CURRENT, Call, MarkedStream, end_call
from fizz_preload import install_compat
from fizz_readiness import Readiness
from fizz_workers import Workers
from fizz_invoke import (
    Context,
    HttpError,
    ResultError,
    error_payload,
    free_slot,
    hold_slot,
    read_body,
    request_headers,
    to_response,
)

# Kubernetes' default terminationGracePeriodSeconds is 30: finish well inside it.
SHUTDOWN_GRACE_SECONDS = 25.0
# Idle keep-alive connections are closed after this; longer than any sane client idle timeout, so
# the gateway's pooled connection is never closed here just as it sends a request on it.
KEEPALIVE_SECONDS = 65


# Up to this size an answer's head and body are joined into one write (a copy of the body).
_ONE_WRITE_BYTES = 64 * 1024


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive; every response carries Content-Length
    server_version = "fizz-python"
    sys_version = ""
    timeout = KEEPALIVE_SECONDS
    # Buffered writes: status line, headers and a small body leave in one segment, and with
    # TCP_NODELAY nothing waits on a delayed ACK.
    wbufsize = -1
    instance: Instance
    readiness: "Readiness"

    def version_string(self) -> str:
        return self.server_version

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def __getattr__(self, name: str):
        # Every method goes to the same router (the function decides what it accepts).
        if name.startswith("do_"):
            return self._handle
        raise AttributeError(name)

    # One line per problem, none per request: the gateway logs requests.
    def log_request(self, code="-", size="-") -> None:
        pass

    def log_error(self, format: str, *args) -> None:
        if not format.startswith("Request timed out"):  # an idle keep-alive connection, not an error
            log(format % args)

    def _handle(self) -> None:
        rt = self.instance
        rt.begin()
        self._body_read = False  # the handler object lives as long as the connection
        try:
            self._route()
            self.wfile.flush()  # before end(): a draining process may exit as soon as busy is 0
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except Exception:
            log("internal error:\n" + format_exc())
            try:
                self._error(500, "INTERNAL", "internal error in the runtime", retryable=True, close=True)
            except OSError:
                self.close_connection = True
        finally:
            rt.end()

    def _route(self) -> None:
        target = self.headers.get("X-Fizz-Instance")
        if target is None:
            path = self.path.split("?", 1)[0]
            if path in ("/healthz", "/readyz"):
                return self._probe(path)
            if path == "/v2/specialize":
                if self.command != "POST":
                    return self._error(405, "METHOD_NOT_ALLOWED", "use POST", headers=[("Allow", "POST")])
                return self._specialize()
        self._invoke(target)

    # -- responses -------------------------------------------------------------------------------

    def _send(self, status: int, headers, body: bytes, close: bool = False, reason=None) -> None:
        # A request body we did not read would be parsed as the next request: close instead.
        close = close or self.instance.draining or (not self._body_read and self._has_body())
        self.send_response(status, reason or None)
        for name, value in headers:
            self.send_header(name, value)
        if status != 204:
            self.send_header("Content-Length", str(len(body)))
        if close:
            self.send_header("Connection", "close")  # also sets self.close_connection
        with_body = self.command != "HEAD" and status not in (204, 304)
        if with_body and len(body) <= _ONE_WRITE_BYTES and self.request_version != "HTTP/0.9":
            # Head and body in one write (end_headers would send the head on its own): one packet,
            # and the reader (the gateway, the poolkeeper) wakes once for the whole answer.
            self._headers_buffer.append(b"\r\n")
            self._headers_buffer.append(body)
            free_slot()  # the answer's last write (a call's slot, if this answers one)
            self.flush_headers()
            return
        if not with_body:
            free_slot()
        self.end_headers()
        if with_body:
            free_slot()
            self.wfile.write(body)

    def _json(self, status: int, value, headers=(), close: bool = False) -> None:
        body = json.dumps(value, separators=(",", ":")).encode("utf-8")
        self._send(status, [*headers, ("Content-Type", "application/json; charset=utf-8")], body, close)

    def _error(self, status, code, message, retryable=False, headers=(), close=False) -> None:
        self._json(status, error_payload(code, message, retryable), headers, close)

    _body_read = False

    def _has_body(self) -> bool:
        return self.headers.get("Content-Length", "0") != "0" or "Transfer-Encoding" in self.headers

    def _read_body(self, headers) -> bytes:
        data = read_body(self.rfile, headers, self.instance.max_body)
        self._body_read = True
        return data

    # -- internal endpoints ----------------------------------------------------------------------

    def _probe(self, path: str) -> None:
        if self.command not in ("GET", "HEAD"):
            return self._error(405, "METHOD_NOT_ALLOWED", "use GET, HEAD", headers=[("Allow", "GET, HEAD")])
        rt = self.instance
        state = rt.public_state()
        if path == "/healthz":
            return self._json(200, {"status": "ok", "state": state})
        ready = rt.state == "specialized" and not rt.draining
        self._json(200 if ready else 503, {"status": "ready" if ready else "not-ready", "state": state})

    def _specialize(self) -> None:
        rt = self.instance
        if not rt.authorized(self.headers.get("X-Fizz-Specialize-Token")):
            message = "x-fizz-specialize-token: missing or wrong; only the poolkeeper specializes"
            return self._error(401, "UNAUTHENTICATED", message, close=True)
        refused = rt.refusal()
        if refused:
            return self._json(*refused)
        # Before any user code: a specialize that came before the announcement (the backend polled)
        # closes the descriptor, so the function never holds it.
        self.readiness.close()
        headers, _ = request_headers(self.headers.items())
        content_type = headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if content_type == ARCHIVE_CONTENT_TYPE:
            return self._specialize_archive(headers)
        try:
            raw = self._read_body(headers)
        except HttpError as exc:
            return self._error(exc.status, exc.code, str(exc), close=exc.close)
        self._json(*rt.specialize(raw))

    def _specialize_archive(self, headers) -> None:
        from fizz_archive import BodyStream  # archive path only

        rt = self.instance
        try:
            body = BodyStream(self.rfile, headers, rt.max_package_bytes)
        except HttpError as exc:
            return self._error(exc.status, exc.code, str(exc), close=exc.close)
        status, payload, close = rt.specialize_archive(body)
        self._body_read = body.complete
        self._json(status, payload, close=close)

    # -- user traffic ----------------------------------------------------------------------------

    def _invoke(self, target) -> None:
        rt = self.instance
        if target is not None and rt.instance_id and target != rt.instance_id:
            message = f"this is instance {rt.instance_id}, not {target}"
            return self._error(421, "MISDIRECTED", message, retryable=True)
        if rt.state != "specialized":
            why = "the function failed to load" if rt.state == "failed" else "the instance is not specialized"
            return self._error(503, "NOT_SPECIALIZED", why, retryable=True)
        gate = rt.gate
        if not gate.enter():
            message = f"{rt.concurrency} calls running and {rt.concurrency} queued"
            return self._error(429, "INSTANCE_BUSY", message, retryable=True, headers=[("Retry-After", "1")])
        hold_slot(gate)
        try:
            self._call()
        finally:
            free_slot()

    def _call(self) -> None:
        rt = self.instance
        headers, params = request_headers(self.headers.items())
        try:
            body = self._read_body(headers)
        except HttpError as exc:
            return self._error(exc.status, exc.code, str(exc), close=exc.close)
        # The call's output is marked with its request id until its answer is sent (fizz_markers).
        call = Call(headers.get("x-request-id"))
        token = CURRENT.set(call)
        try:
            self._serve(headers, params, body)
        finally:
            end_call(call)
            CURRENT.reset(token)

    def _serve(self, headers, params, body: bytes) -> None:
        rt = self.instance
        request_id = headers.get("x-request-id") or _new_request_id()
        if rt.flask is not None:
            from fizz_flask import call_flask  # imported at the specialization already

            return call_flask(self, rt, body, request_id)
        context = Context(self.command, self.path, headers, params, body, request_id, rt.function)

        rt.stdout.start()
        try:
            result = rt.fn(context) if rt.takes_context else rt.fn()
        except HttpError as exc:  # context.json() on a body that is not JSON
            rt.stdout.stop()
            return self._error(exc.status, exc.code, str(exc))
        except (Exception, SystemExit) as exc:
            rt.stdout.stop()
            log(f"function error (request {request_id}):\n{format_exc()}")
            return self._error(500, "FUNCTION_ERROR", f"{type(exc).__name__}: {exc}")
        printed = rt.stdout.stop()
        try:
            status, response_headers, payload = to_response(result, printed)
        except ResultError as exc:
            log(f"bad return value (request {request_id}): {exc}")
            return self._error(500, "FUNCTION_ERROR", str(exc))
        self._send(status, response_headers, payload)


def _new_request_id() -> str:
    import uuid  # only for direct traffic; the gateway always sends X-Request-Id

    return str(uuid.uuid4())


class Server(ThreadingHTTPServer):
    daemon_threads = True  # idle keep-alive threads must not hold the exit back
    request_queue_size = 1024  # the default backlog of 5 would refuse bursts before the gate sees them
    workers: Workers

    def process_request(self, request, client_address) -> None:
        # A thread started before the instance was ready takes the connection (fizz_workers).
        self.workers.submit(request, client_address)

    def server_bind(self) -> None:
        # HTTPServer.server_bind resolves the host's FQDN, a DNS lookup on the cold-start path that
        # nothing here uses.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]


def _rehearse_then_announce(rt: Instance, server: Server, ready: Readiness) -> None:
    """On the preload's thread once it is over: a pool instance rehearses a cold start
    (fizz_rehearsal) before it counts as ready, so the first specialize and call run warm."""
    try:
        from fizz_rehearsal import rehearse

        rehearse(server.server_address, rt.preload.state == "ready", rt.preload.stopping)
    finally:
        ready.announce()


def main() -> None:
    ready = Readiness()  # first: the descriptor's variable leaves the environment before anything runs
    Handler.readiness = ready
    real_stdout = sys.stdout
    if hasattr(real_stdout, "reconfigure"):
        real_stdout.reconfigure(line_buffering=True)  # function logs reach the collector promptly
    # Before anything can print: each line is tagged with the call it belongs to (fizz_markers).
    sys.stdout = MarkedStream(real_stdout)
    sys.stderr = MarkedStream(sys.stderr)
    rt = Instance()  # captures what calls print, on top of the marked stdout
    sys.stdout = rt.stdout
    Handler.instance = rt
    install_compat()
    if ":" in rt.host:
        Server.address_family = socket.AF_INET6
    try:
        server = Server((rt.host, rt.port), Handler)
    except OSError as exc:
        log(f"cannot listen on {rt.host}:{rt.port}: {exc}")
        sys.exit(1)
    server.workers = Workers(server.process_request_thread)
    server.workers.prestart(2)  # the specialize's connection and the first call's

    shutdown_lock = threading.RLock()  # re-entrant: a signal can land while the main thread holds it

    def begin_shutdown(reason: str, is_signal: bool) -> None:
        """Stop accepting, finish the calls in flight, exit. A repeated signal means "now"; a
        repeated trigger that is not a signal (stdin closing after a SIGTERM) changes nothing."""
        with shutdown_lock:
            if rt.draining:
                if is_signal:
                    log(f"{reason} again: exiting without waiting")
                    os._exit(1)
                return
            rt.draining = True
        log(f"{reason}: no new connections; finishing in-flight calls")
        # shutdown() waits for serve_forever() to return, which runs on the main thread.
        threading.Thread(target=server.shutdown, daemon=True).start()

    def on_signal(signum, _frame) -> None:
        begin_shutdown(signal.Signals(signum).name, True)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    if os.environ.get("FIZZ_PARENT_STDIN") == "1":
        # The process backend's parent holds our stdin pipe: EOF means it is gone, even if it was
        # SIGKILLed, and an instance must not outlive the poolkeeper that tracks it.
        def watch_stdin() -> None:
            try:
                while sys.stdin.buffer.read1(65536):
                    pass
            except (AttributeError, OSError, ValueError):  # no stdin at all counts as closed
                pass
            begin_shutdown("parent closed stdin", False)

        threading.Thread(target=watch_stdin, name="fizz-stdin", daemon=True).start()

    suffix = f" as {rt.instance_id}" if rt.instance_id else ""
    log(f"python runtime listening on {rt.host}:{rt.port}{suffix}")
    # After that line is out: the poolkeeper reads it as the warm instance's, not a function's.
    if ready.after_preload:
        rt.preload.start(on_done=lambda: _rehearse_then_announce(rt, server, ready))
    else:
        ready.announce()
        rt.preload.start()  # cut short by the specialize that is already on its way
    server.serve_forever(poll_interval=0.2)
    server.server_close()
    finished = rt.wait_idle(SHUTDOWN_GRACE_SECONDS)
    if not finished:
        log(f"calls still running after {SHUTDOWN_GRACE_SECONDS:.0f}s; exiting")
    sys.stderr.flush()
    real_stdout.flush()
    # os._exit: threads the function started must not keep a drained instance alive.
    os._exit(0 if finished else 1)
