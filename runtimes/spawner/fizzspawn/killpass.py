"""The shielded kill pass of an instance uid's clean-up (the poolkeeper's uid-cleanup.ts says why
it is built so): SIGKILL, twice, to every process the uid may be signalled by, sent with that uid
as this process's effective uid only, its real and saved uid `ruid`, one no process on the host
runs as. The uid's processes can then neither signal this process (their uid is not its real or
saved one) nor escape it: the kernel signals them all in one pass under its task-list lock.

Run in a fork of the spawner (server.py, op "killpass"): no interpreter start and no fork of the
poolkeeper per clean-up. Where there is no spawner, the poolkeeper runs it as
`python3 -I -S fizz_spawner.py --kill-pass RUID UID LOCK`. One text for both.

Exit codes: 0 signalled; 3 the uid switch failed (e.g. `ruid` unmapped in a user namespace), and
the poolkeeper runs its pass as the uid instead; 4 a capability was still effective after the
switch (SECBIT_NO_SETUID_FIXUP inherited), so it did not signal: kill(-1) with CAP_KILL reaches
every process on the host; 5 past its deadline, so it did not signal; 2 bad arguments; 1 anything
unexpected.

`by` (the spawner's passes only): a CLOCK_MONOTONIC deadline in ms, after which the pass signals
nothing. The poolkeeper stops waiting for a forked pass a while after it (PASS_BOUND_MS), runs one
of its own and gives the uid back; a pass the spawner forked late (its loop stalled) or that
waited long for the lock would otherwise SIGKILL what the uid's next instance, another tenant's,
runs by then. Checked after the lock and the switch, right before the signals.

`lock` ("" for none): a root-only file every pass on the host holds (flock) from before its uid
switch until it exits, so no two passes ever run as `ruid` at once and kill each other. At most
2 s: a lock never granted must not hold every clean-up forever; without it the pass still runs.
"""

import fcntl
import math
import os
import signal
import time


def _late(*_):
    raise TimeoutError()


def _hold(lock):
    try:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        signal.signal(signal.SIGALRM, _late)
        signal.alarm(2)
        fcntl.flock(fd, fcntl.LOCK_EX)  # held by the descriptor until this process exits
    except OSError:  # TimeoutError is one: the pass runs without the lock
        pass
    finally:
        signal.alarm(0)


def _past(by):
    return by is not None and time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1_000_000 >= by


def _signal_all(ruid, uid, lock, by):
    if lock:
        _hold(lock)
    try:
        # Groups first, while still root. setresuid(ruid, uid, ruid) from root leaves no
        # capability (none of the three is 0), so CAP_KILL is gone and the kernel's uid rule alone
        # decides whom kill(-1) reaches. The change of credentials also makes this process
        # non-dumpable: the uid's processes cannot trace it or read its /proc files either.
        os.setgroups([])
        os.setresgid(uid, uid, uid)
        os.setresuid(ruid, uid, ruid)
    except OSError:
        return 3
    try:
        with open("/proc/self/status") as f:
            eff = [line for line in f if line.startswith("CapEff:")]
    except OSError:
        eff = []
    if len(eff) != 1 or int(eff[0].split()[1], 16) != 0:
        return 4
    if _past(by):
        return 5
    for _ in (0, 1):
        try:
            os.kill(-1, signal.SIGKILL)
        except OSError:
            pass
    return 0


def valid_uid(value):
    """An uid the pass may take: not root's, and not -1 (0xffffffff: "unchanged" to setresuid)."""
    return type(value) is int and 0 < value < 0xFFFFFFFF


def valid_deadline(by):
    """A deadline the pass can compare (`by`): a finite number of ms, or None for none."""
    # Not math.isfinite on an int: one too large for a float raises, out of the spawner's loop.
    return by is None or type(by) is int or (type(by) is float and math.isfinite(by))


def run(ruid, uid, lock, by=None):
    """Never returns: exits with the pass's code (see the module's text)."""
    code = 1
    try:
        if not (valid_uid(ruid) and valid_uid(uid) and ruid != uid and isinstance(lock, str)
                and valid_deadline(by)):
            code = 2
        else:
            code = _signal_all(ruid, uid, lock, by)
    finally:
        os._exit(code)


def in_fork(ruid, uid, lock, by):
    """The spawner's child: nothing of the spawner's (its wake-up pipe, the poolkeeper's pipes, its
    children's sockets) stays open or reachable in it while it runs. Never returns."""
    try:
        signal.set_wakeup_fd(-1)
        null = os.open("/dev/null", os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        os.closerange(3, 1 << 20)
    except BaseException:  # noqa: BLE001 - never back into the spawner's loop
        os._exit(1)
    run(ruid, uid, lock, by)


def main(args):
    """`fizz_spawner.py --kill-pass RUID UID LOCK`. Never returns."""
    try:
        ruid, uid, lock = int(args[0]), int(args[1]), args[2]
    except (IndexError, ValueError):
        os._exit(2)
    if len(args) != 3:
        os._exit(2)
    run(ruid, uid, lock)
