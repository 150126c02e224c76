"""Connection threads started ahead of the connections they serve.

ThreadingHTTPServer starts a thread per connection, and Thread.start() waits for the new thread to
run: on a warm-pool cold start the specialize's connection and the first call's each paid that in
the accepting thread (~0.3-0.5 ms of CPU apiece, measured per thread from /proc). A pool instance
starts two threads before it announces readiness; each waits on a queue, and serves connection
after connection. Beyond the spare ones, a connection with no idle thread gets a new one, as before.
A thread that finds MAX_IDLE others idle when its connection closes ends, so a burst does not leave
its threads behind.
"""

from __future__ import annotations

import threading
from queue import SimpleQueue

# typing costs milliseconds of cold start; annotations are never evaluated (PEP 563).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Tuple

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
        with self._lock:
            self._idle += count
        for _ in range(count):
            self._start()

    def submit(self, request: Any, client_address: Any) -> None:
        self._queue.put((request, client_address))
        with self._lock:
            if self._idle > 0:
                self._idle -= 1
                return
        self._start()  # takes the connection just queued (or an earlier one: all are equal)

    def _start(self) -> None:
        threading.Thread(target=self._run, name="fizz-connection", daemon=True).start()

    def _run(self) -> None:
        while True:
            request, client_address = self._queue.get()
            self._serve(request, client_address)
            with self._lock:
                if self._idle >= MAX_IDLE:
                    return
                self._idle += 1
