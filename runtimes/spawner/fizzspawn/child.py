"""What the forked child does before its exec: its own session, the uid's limits and privileges,
its descriptors, its directory. Any failure is reported on the error pipe and ends it unexec'd."""

import errno
import fcntl
import json
import os
import resource
import signal

from .privs import PR_SET_NO_NEW_PRIVS, PR_SET_PDEATHSIG, clear_inheritable_caps, prctl


def _getsig(s):
    try:
        return signal.getsignal(s)
    except (OSError, ValueError):
        return None


class Parent:
    """What a child needs to know of the spawner, taken once (parent_state) when its signal
    dispositions are final: the child runs between fork and exec, where less work is better."""

    __slots__ = ("ignored", "pid", "max_fd")

    def __init__(self, ignored, pid, max_fd):
        self.ignored, self.pid, self.max_fd = ignored, pid, max_fd


def parent_state():
    max_fd = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if max_fd == resource.RLIM_INFINITY or max_fd <= 0:
        max_fd = 1 << 20
    # Signals ignored here (the spawner's stop signals; Python ignores SIGPIPE and SIGXFSZ): an
    # exec keeps an ignored signal ignored, so the child resets them (libuv resets all); handled
    # ones are reset by the exec.
    ignored = [
        s for s in range(1, signal.NSIG)
        if s not in (signal.SIGKILL, signal.SIGSTOP) and _getsig(s) == signal.SIG_IGN
    ]
    return Parent(ignored, os.getpid(), max_fd)


def child(req, fds, errw, parent):
    """In the forked child: never returns. Any failure is written to errw and ends the child
    before the exec, so a command never runs with more privilege than asked."""
    stage = "setup"
    try:
        # Dispositions: Python ignores SIGPIPE (and exec keeps ignored signals), libuv resets all.
        signal.set_wakeup_fd(-1)
        for s in parent.ignored:
            signal.signal(s, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_SETMASK, [])
        stage = "setsid"
        os.setsid()
        uid = req.get("uid")
        if uid is not None:
            nproc = req.get("nproc")
            if nproc:
                # As root (exempt), before the drop: from the setresuid on it binds the uid, and an
                # uid already over it fails the exec with EAGAIN.
                stage = "setrlimit"
                resource.setrlimit(resource.RLIMIT_NPROC, (nproc, nproc))
            stage = "setgroups"
            os.setgroups([])
            stage = "setresgid"
            os.setresgid(uid, uid, uid)
            stage = "setresuid"
            os.setresuid(uid, uid, uid)
            stage = "capset"
            clear_inheritable_caps()
        stage = "no_new_privs"
        prctl(PR_SET_NO_NEW_PRIVS, 1)
        # After the uid change, which clears the parent-death signal.
        stage = "pdeathsig"
        prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent.pid:
            # The spawner died before the prctl: the signal will never come.
            raise OSError(errno.ESRCH, "the spawner is gone")
        stage = "stdio"
        n = len(fds)
        if errw < n:
            # Out of the targets' way too: a dup2 onto it would close the error pipe (its EOF
            # taken for a successful exec) and send a later failure into a child's stream.
            errw = fcntl.fcntl(errw, fcntl.F_DUPFD_CLOEXEC, n)
        # Above every target first, so a dup2 never overwrites a source still to be moved.
        high = [fcntl.fcntl(f, fcntl.F_DUPFD, n) if f is not None and f < n else f for f in fds]
        for i, f in enumerate(high):
            if f is None:
                if i > 2:
                    continue
                f = os.open("/dev/null", os.O_RDWR)
            if f != i:
                os.dup2(f, i, inheritable=True)
            else:
                os.set_inheritable(i, True)
        # Everything else goes, but errw (close-on-exec: its EOF tells the spawner exec worked).
        if errw > n:
            os.closerange(n, errw)
        os.closerange(max(n, errw + 1), parent.max_fd)
        stage = "chdir"
        os.chdir(req["cwd"])
        stage = "exec"
        file, args, env = req["file"], req["args"], req["env"]
        if "/" in file:
            os.execve(file, args, env)
        else:
            os.execvpe(file, args, env)  # PATH of the instance's env, as child_process.spawn
    except BaseException as e:  # noqa: BLE001 - every failure must be reported, never run
        code = getattr(e, "errno", None) or 0
        msg = json.dumps({"stage": stage, "errno": code, "message": str(e)})
        try:
            os.write(errw, msg.encode())
        finally:
            os._exit(127)
