"""The spawner's request loop: spawns (fork, the child's report on its error pipe), signals and
autogroup writes for its children, and their reaping, as the package docstring's protocol says."""

import errno
import json
import os
import selectors
import signal
import socket
import sys

from . import killpass
from .child import child, parent_state
from .privs import PR_SET_PDEATHSIG, prctl

HEADER_TOKEN_LEN = 32


class Spawner:
    def __init__(self, sock_path, parent):
        self.sock_path = sock_path
        self.parent = parent  # what each child needs of this process (child.parent_state)
        self.sel = selectors.DefaultSelector()
        self.inbuf = b""
        self.live = {}  # pid -> id, until reaped
        self.pids = {}  # id -> pid, until reaped
        self.pending = {}  # error-pipe read fd -> (id, pid, chunks)
        self.unannounced = {}  # pid -> error-pipe fd: exit waits for the spawn result
        self.failed = set()  # pids whose spawn failed: their exit is not reported
        self.passes = {}  # pid -> id of a kill pass (killpass.py), until reaped

    def send(self, obj):
        data = (json.dumps(obj, separators=(",", ":")) + "\n").encode()
        while data:
            data = data[os.write(1, data) :]

    def spawn(self, req):
        rid = req.get("id")
        fds = []
        try:
            token = req["token"]
            if not isinstance(token, str) or len(token) != HEADER_TOKEN_LEN:
                raise ValueError("token must be %d characters" % HEADER_TOKEN_LEN)
            stdio = req["stdio"]
            if not 3 <= len(stdio) <= 10:
                raise ValueError("stdio must have 3 to 10 entries")
            for k in ("file", "cwd"):
                if not isinstance(req.get(k), str):
                    raise ValueError("%s must be a string" % k)
            if not isinstance(req.get("args"), list) or not isinstance(req.get("env"), dict):
                raise ValueError("args must be a list and env an object")
            uid = req.get("uid")
            # -1 (0xffffffff) would mean "unchanged" to setresuid: the child would stay root.
            if uid is not None and (type(uid) is not int or not 0 <= uid < 0xFFFFFFFF):
                raise ValueError("uid must be an integer from 0 to 4294967294")
            nproc = req.get("nproc")
            if nproc is not None and (type(nproc) is not int or nproc <= 0):
                raise ValueError("nproc must be a positive integer")
            for i, kind in enumerate(stdio):
                if kind == "pipe":
                    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                    s.connect(self.sock_path)
                    s.sendall(("%s %d\n" % (token, i)).encode())
                    fds.append(s.detach())
                elif kind == "ignore":
                    fds.append(None)
                else:
                    raise ValueError("stdio[%d] must be pipe or ignore" % i)
        except (OSError, ValueError, KeyError, TypeError) as e:
            for f in fds:
                if f is not None:
                    os.close(f)
            self.send(
                {"ev": "error", "id": rid, "stage": "request", "errno": getattr(e, "errno", 0) or 0,
                 "code": errno.errorcode.get(getattr(e, "errno", 0) or 0, "EINVAL"),
                 "message": "bad spawn request: %s" % e}
            )
            return
        errr = errw = None
        stage = "pipe"
        try:
            # Out of descriptors (EMFILE, ENFILE) is this spawn's error: escaping the loop, it
            # ended the spawner, and every child it started with it (their parent-death signal).
            errr, errw = os.pipe2(os.O_CLOEXEC)
            stage = "fork"
            pid = os.fork()
        except OSError as e:
            for f in fds + [errr, errw]:
                if f is not None:
                    os.close(f)
            self.send({"ev": "error", "id": rid, "stage": stage, "errno": e.errno,
                       "code": errno.errorcode.get(e.errno, "EIO"), "message": str(e)})
            return
        if pid == 0:
            os.close(errr)
            child(req, fds, errw, self.parent)
        os.close(errw)
        for f in fds:
            if f is not None:
                os.close(f)
        self.live[pid] = rid
        self.pids[rid] = pid
        self.pending[errr] = (rid, pid, [])
        self.unannounced[pid] = errr
        self.sel.register(errr, selectors.EVENT_READ, ("err", pid))

    def kill_pass(self, req):
        """Forks a uid clean-up's kill pass (killpass.py): answered with its exit code once reaped,
        {"ev":"passed","id":N,"code":C|null}; null when it died of a signal or never started."""
        rid = req.get("id")
        ruid, uid, lock, by = req.get("ruid"), req.get("uid"), req.get("lock"), req.get("by")
        if not (killpass.valid_uid(ruid) and killpass.valid_uid(uid) and ruid != uid
                and isinstance(lock, str) and by is not None and killpass.valid_deadline(by)):
            sys.stderr.write("fizz-spawner: killpass: ruid and uid must be two different "
                             "integers from 1 to 4294967294, lock a string and by a number\n")
            self.send({"ev": "passed", "id": rid, "code": None})
            return
        try:
            pid = os.fork()
        except OSError as e:
            sys.stderr.write("fizz-spawner: killpass: fork: %s\n" % e)
            self.send({"ev": "passed", "id": rid, "code": None})
            return
        if pid == 0:
            killpass.in_fork(ruid, uid, lock, by)  # never returns
        self.passes[pid] = rid

    def settle(self, fd, block=False):
        """Reads the child's error pipe: EOF with nothing = it exec'd."""
        rid, pid, chunks = self.pending[fd]
        while True:
            try:
                b = os.read(fd, 4096)
            except BlockingIOError:
                return
            if not b:
                break
            chunks.append(b)
            if not block:
                return  # more, or the EOF, comes with the next readiness
        self.sel.unregister(fd)
        os.close(fd)
        del self.pending[fd]
        del self.unannounced[pid]
        if not chunks:
            self.send({"ev": "spawned", "id": rid, "pid": pid})
            return
        self.failed.add(pid)
        try:
            info = json.loads(b"".join(chunks))
        except ValueError:
            info = {"stage": "setup", "errno": 0, "message": "unreadable error report"}
        code = errno.errorcode.get(info.get("errno") or 0, "EIO")
        self.send({"ev": "error", "id": rid, "stage": info.get("stage"), "errno": info.get("errno"),
                   "code": code, "message": info.get("message")})

    def reap(self):
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if pid in self.passes:
                rid = self.passes.pop(pid)
                code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else None
                self.send({"ev": "passed", "id": rid, "code": code})
                continue
            rid = self.live.pop(pid, None)
            if rid is None:
                continue
            self.pids.pop(rid, None)
            errr = self.unannounced.get(pid)
            if errr is not None:
                # Its exec result first; the pipe is at EOF now that the child is gone.
                self.settle(errr, block=True)
            if pid in self.failed:
                self.failed.discard(pid)
                continue  # a failed spawn: the error was its only report
            if os.WIFSIGNALED(status):
                sig = os.WTERMSIG(status)
                try:
                    name = signal.Signals(sig).name
                except ValueError:
                    name = "SIG%d" % sig
                self.send({"ev": "exit", "id": rid, "code": None, "signal": name})
            else:
                self.send({"ev": "exit", "id": rid, "code": os.WEXITSTATUS(status), "signal": None})

    def kill(self, req):
        rid, sig = req.get("id"), req.get("signal")
        pid = self.pids.get(rid)
        if pid is None or not isinstance(sig, int):
            return  # reaped (its pid may be another process's by now) or unknown: refused
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            try:
                os.kill(pid, sig)
            except OSError:
                pass
        except OSError as e:
            sys.stderr.write("fizz-spawner: kill %s: %s\n" % (pid, e))

    def nice(self, req):
        """Writes the child's session's autogroup niceness (StartPriority, instance-launch.ts).
        Here and not by pid in the poolkeeper, for the reason kill is: the poolkeeper learns of
        an exit only after this process has reaped the child, and the pid may be another
        session's by then. Not reaped (in self.pids), the pid is still this child's, zombie or not."""
        rid, value = req.get("id"), req.get("nice")
        self.send({"ev": "niced", "id": rid, "ok": self._set_nice(rid, value)})

    def _set_nice(self, rid, value):
        """Whether the write was made: every nice request is answered, so the poolkeeper hands an
        instance out only once its priority is back up (StartPriority)."""
        if type(value) is not int or not -20 <= value <= 19:
            sys.stderr.write("fizz-spawner: nice: nice must be an integer from -20 to 19\n")
            return False
        pid = self.pids.get(rid)
        if pid is None:
            return False  # reaped (its pid may be another process's by now) or unknown: refused
        try:
            fd = os.open("/proc/%d/autogroup" % pid, os.O_WRONLY | os.O_CLOEXEC)
            try:
                os.write(fd, str(value).encode())
            finally:
                os.close(fd)
        except OSError as e:
            sys.stderr.write("fizz-spawner: nice %s: %s\n" % (pid, e))
            return False
        return True

    def handle(self, line):
        try:
            req = json.loads(line)
        except ValueError:
            sys.stderr.write("fizz-spawner: unreadable request line\n")
            return
        op = req.get("op") if isinstance(req, dict) else None
        if op in ("spawn", "kill", "nice", "killpass") and type(req.get("id")) is not int:
            # Used as a key of self.live and self.pids: another type raised (unhashable) out of
            # the loop, and the spawner died, and every child it started with it.
            if op == "spawn":
                self.send({"ev": "error", "id": req.get("id"), "stage": "request", "errno": 0,
                           "code": "EINVAL", "message": "bad spawn request: id must be an integer"})
            else:
                sys.stderr.write("fizz-spawner: %s: id must be an integer\n" % op)
            return
        if op == "spawn":
            self.spawn(req)
        elif op == "kill":
            self.kill(req)
        elif op == "nice":
            self.nice(req)
        elif op == "killpass":
            self.kill_pass(req)
        else:
            sys.stderr.write("fizz-spawner: unknown op %r\n" % (op,))

    def run(self):
        wr, ww = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(ww, warn_on_full_buffer=False)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        os.set_blocking(0, False)
        self.sel.register(0, selectors.EVENT_READ, "in")
        self.sel.register(wr, selectors.EVENT_READ, "sig")
        self.send({"ev": "hello", "pid": os.getpid()})
        while True:
            for key, _ in self.sel.select():
                if key.data == "sig":
                    try:
                        while os.read(wr, 512):
                            pass
                    except BlockingIOError:
                        pass
                    self.reap()
                elif key.data[0] == "err":
                    # Settled already by a reap in this same round, its fd maybe reused since.
                    p = self.pending.get(key.fd)
                    if p is not None and p[1] == key.data[1]:
                        self.settle(key.fd)
                elif key.data == "in":
                    try:
                        b = os.read(0, 65536)
                    except BlockingIOError:
                        continue
                    if not b:
                        os._exit(0)  # the poolkeeper is gone: its children follow (pdeathsig)
                    self.inbuf += b
                    *lines, self.inbuf = self.inbuf.split(b"\n")
                    for line in lines:
                        if line.strip():
                            self.handle(line)


def main(argv):
    if len(argv) != 3:
        sys.stderr.write("usage: fizz_spawner.py SOCKET PARENT_PID\n")
        sys.exit(2)
    prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != int(argv[2]):
        os._exit(1)  # the poolkeeper died before the prctl
    # Stop signals are ignored: this process ends with the poolkeeper (stdin EOF, parent-death
    # signal) and never before it, or its children would die at once (their parent-death signal)
    # in the middle of the poolkeeper's graceful stop. A terminal's Ctrl-C reaches the whole
    # foreground process group, this process too, and a service manager's stop (systemd's
    # default) every process of the cgroup.
    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, signal.SIG_IGN)
    Spawner(argv[1], parent_state()).run()
