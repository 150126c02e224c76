"""The readiness pipe (FIZZ_READY_FD, docs/runtime-contract.md): tells the process backend this
instance can take a specialize, sooner than its /healthz polling would find out.

Written once and closed before any user code runs (the specialize closes it if it is still open),
and dropped from the environment at start, so the function never sees or holds it. A failure only
means the backend polls.

When: on listen for an instance a specialize already waits for (FIZZ_WARM_UP=0, an empty-pool
start); otherwise once the Flask preload and the rehearsal after it (fizz_rehearsal) are over, so
that "the pool is full" means no start-up CPU is left in it. Announced on listen, a refill imported Flask (~200 ms of CPU, far more on a busy
machine) next to the cold start that had just taken another instance, at normal priority (the
process backend lowers a refill's priority only until it is ready).
"""

from __future__ import annotations

import os
import threading

# typing costs milliseconds of cold start; annotations are never evaluated (PEP 563).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Optional

from fizz_instance import log


class Readiness:
    def __init__(self) -> None:
        raw = os.environ.pop("FIZZ_READY_FD", None)
        self.after_preload = os.environ.get("FIZZ_WARM_UP") != "0"
        self._lock = threading.Lock()
        self._fd: Optional[int] = None
        if raw:
            try:
                self._fd = int(raw)
            except ValueError:
                self._fd = None

    def announce(self) -> None:
        """Writes ``ready`` and closes the descriptor; only the first call of either does anything."""
        self._end(b"ready\n")

    def close(self) -> None:
        """Closes the descriptor unwritten: a specialize came first, the backend found us by polling.
        Returns only once it is closed, whichever thread got there first: user code loads next."""
        self._end(None)

    def _end(self, line: Optional[bytes]) -> None:
        # The write and the close under the lock: a close() racing the preload thread's announce()
        # must not return while the other thread still holds the descriptor open (the function
        # would then run with it, and could write on it or pass it to a child).
        with self._lock:
            fd, self._fd = self._fd, None
            if fd is None:
                return
            if line is not None:
                try:
                    os.write(fd, line)
                except OSError as exc:
                    log(f"readiness not announced: {exc}")
            try:
                os.close(fd)
            except OSError:
                pass  # not open: nothing to leak
