"""Connection threads started ahead of the connections they serve.

ThreadingHTTPServer starts a thread per connection, and Thread.start() waits for the new thread to
run: on a warm-pool cold start the specialize's connection and the first call's each paid that in
the accepting thread (~0.3-0.5 ms of CPU apiece, measured per thread from /proc). A pool instance
starts two threads before it announces readiness; each waits on a queue, and serves connection
after connection. Beyond the spare ones, a connection with no idle thread gets a new one, as before.
A thread that finds MAX_IDLE others idle when its connection closes ends, so a burst does not leave
its threads behind.

A connection is queued only for a thread already counted idle; a new thread is handed its first
connection directly. So when Thread.start() fails (a pids or memory limit), the server closes that
one connection as ThreadingMixIn did, and nothing is left queued for a thread that does not exist
(a later thread would serve the closed socket, and the idle count would be one too high, leaving a
later connection queued with no thread to take it).
"""

from __future__ import annotations

import threading
from queue import SimpleQueue

# typing costs milliseconds of cold start; annotations are never evaluated (PEP 563).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Optional, Tuple

MAX_IDLE = 4


class Workers:
    def __init__(self, serve: Callable[[Any, Any], None]) -> None:
        self._serve = serve
        self._queue: SimpleQueue[Tuple[Any, Any]] = SimpleQueue()
        self._lock = threading.Lock()
        # Threads that will take the next queued connection, minus connections queued for them.
        self._idle = 0

    @property
    def idle(self) -> int:
        return self._idle

    def prestart(self, count: int) -> None:
        for _ in range(count):
            self._start(None)
            with self._lock:  # counted once started: a failed start counts no thread
                self._idle += 1

    def submit(self, request: Any, client_address: Any) -> None:
        """Raises what Thread.start() raises; the connection is then not queued (the server closes it)."""
        with self._lock:
            if self._idle > 0:
                self._idle -= 1
                self._queue.put((request, client_address))
                return
        self._start((request, client_address))

    def _start(self, first: Optional[Tuple[Any, Any]]) -> None:
        threading.Thread(target=self._run, args=(first,), name="fizz-connection", daemon=True).start()

    def _run(self, job: Optional[Tuple[Any, Any]]) -> None:
        while True:
            if job is None:
                job = self._queue.get()
            self._serve(*job)
            job = None
            with self._lock:
                if self._idle >= MAX_IDLE:
                    return
                self._idle += 1
