"""Call markers: which call a line of the function's stdout or stderr belongs to.

The format is re-stated from shared/events/src/logs.ts: a line ``ESC _ fizz:call=<request id> ESC \\``
of its own on a stream before a call's first output on that stream, and the same with an empty id
before output that belongs to no call. The poolkeeper removes those lines and tags the lines after
them with the request id.

Calls run on the server's threads, one at a time per thread; the current call is a context
variable, so a thread the function starts (a new, empty context) writes as "no call", and so does
anything that copied the context once the call is over (its ``Call.id`` is cleared at the end).
Lazy: a call that prints nothing costs a context variable set and reset; a stream gets a marker
only when the call writing differs from the one it last marked, and a clearing one when the call
it names ends (``end_call``), so what reaches the fd around the wrapper afterwards (a child
process, ``os.write``, ``sys.stdout.buffer``, C code) is no call's rather than that call's.
"""

from __future__ import annotations

import contextvars
import re
import threading

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Iterable, Optional

MARKER_PREFIX = "\x1b_fizz:call="
MARKER_SUFFIX = "\x1b\\"
# What the poolkeeper accepts as a request id in a marker (parseCallMarker in logs.ts).
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


class Call:
    """The call a thread is running; ``id`` is "" when it has no usable id, and once it is over."""

    __slots__ = ("id",)

    def __init__(self, request_id: Optional[str]) -> None:
        self.id = request_id if request_id and _REQUEST_ID.fullmatch(request_id) else ""


_STREAMS: list[MarkedStream] = []

CURRENT: contextvars.ContextVar[Optional[Call]] = contextvars.ContextVar("fizz_call", default=None)


def end_call(call: Call) -> None:
    """The call is over (its answer sent): streams still marked with it go back to no call's."""
    call_id, call.id = call.id, ""
    if call_id:
        for stream in _STREAMS:
            stream._release(call_id)


class MarkedStream:
    """Replacement for ``sys.stdout`` / ``sys.stderr``: writes go to the real stream, preceded by a
    marker line when the writer's call is not the one the stream last marked. print(), logging's
    stream handlers and tracebacks all write through it."""

    def __init__(self, real: Any) -> None:
        self._real = real
        # Re-entrant: a signal handler that logs may run while this thread is inside write().
        self._lock = threading.RLock()
        self._marked = ""  # at start, output belongs to no call
        self._line_open = False  # the last write did not end its line
        _STREAMS.append(self)

    def write(self, text: str) -> int:
        if not text or not isinstance(text, str):  # the real stream refuses what is not text
            return self._real.write(text)
        call = CURRENT.get()
        call_id = "" if call is None else call.id
        with self._lock:
            if call_id != self._marked:
                self._marked = call_id
                # A marker is recognized only as a whole line: end the line another call left open.
                lead = "\n" if self._line_open else ""
                self._real.write(f"{lead}{MARKER_PREFIX}{call_id}{MARKER_SUFFIX}\n{text}")
            else:
                self._real.write(text)
            self._line_open = text[-1] != "\n"
        return len(text)

    def _release(self, call_id: str) -> None:
        with self._lock:
            if self._marked != call_id:
                return
            self._marked = ""
            lead = "\n" if self._line_open else ""
            self._line_open = False
            try:
                self._real.write(f"{lead}{MARKER_PREFIX}{MARKER_SUFFIX}\n")
                self._real.flush()
            except (OSError, ValueError):  # a closed stream: the call's answer is out regardless
                pass

    def writelines(self, lines: Iterable[str]) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        self._real.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)
