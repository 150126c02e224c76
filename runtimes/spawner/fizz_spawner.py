"""Fizz's instance spawner: forks and execs function instances for the poolkeeper.

Why a separate process: libuv's spawn forks the whole 60-90 MB poolkeeper and blocks its event
loop until the child has exec'd (~7-10 ms), and setpriv costs another exec (~3-8 ms). This process
is small, so its fork is cheap, and it drops the instance's privileges itself before the one exec.

Protocol (one JSON object per line; stdlib only, run by Debian's /usr/bin/python3 as root):
  stdin  {"op":"spawn","id":N,"token":HEX32,"file":F,"args":[argv0,...],"env":{...},"cwd":D,
          "uid":U|null,"nproc":L|null,"stdio":["pipe"|"ignore", x3 or x4]}
         {"op":"kill","id":N,"signal":S}  (the child's process group; refused once it is reaped)
         {"op":"nice","id":N,"nice":K}  (the child's autogroup, -20..19; refused once it is reaped)
  stdout {"ev":"hello","pid":P}
         {"ev":"spawned","id":N,"pid":P}   (the child exec'd)
         {"ev":"error","id":N,"stage":...,"code":"EPERM","errno":1,"message":...} (nothing ran)
         {"ev":"exit","id":N,"code":C|null,"signal":"SIGKILL"|null}
Each "pipe" descriptor i of a spawn is a connection to the poolkeeper's Unix socket (argv[1]),
which first carries the header "<token> <i>\n" (35 bytes), so the poolkeeper can tell which pending
spawn and descriptor it is: Node cannot receive descriptors from another process.
Exits with the poolkeeper: stdin EOF, and PR_SET_PDEATHSIG(SIGKILL); its children have the same
parent-death signal, so none outlives it.
"""

import ctypes
import errno
import fcntl
import json
import os
import resource
import selectors
import signal
import socket
import struct
import sys

PR_SET_PDEATHSIG = 1
PR_SET_NO_NEW_PRIVS = 38
LINUX_CAPABILITY_VERSION_3 = 0x20080522
HEADER_TOKEN_LEN = 32

libc = ctypes.CDLL(None, use_errno=True)


def check(ret, what):
    if ret != 0:
        e = ctypes.get_errno()
        raise OSError(e, "%s: %s" % (what, os.strerror(e)))


# Looked up once here, not in every child: a first ctypes call (dlsym, argument conversion set-up)
# cost ~3 ms in each forked child, where it would be paid again on every spawn.
_prctl, _capget, _capset = libc.prctl, libc.capget, libc.capset
_CAP_HEADER = struct.pack("Ii", LINUX_CAPABILITY_VERSION_3, 0)


def prctl(option, arg):
    check(_prctl(option, ctypes.c_ulong(arg), 0, 0, 0), "prctl")


def clear_inheritable_caps():
    """setpriv --inh-caps=-all. no_new_privs alone already keeps file capabilities from adding to
    the permitted set, but an inheritable set left non-empty would still be handed on through
    every exec (and shows in /proc): cleared, as setpriv does, for the same result."""
    data = ctypes.create_string_buffer(24)
    check(_capget(_CAP_HEADER, data), "capget")
    words = list(struct.unpack("6I", data.raw))  # (effective, permitted, inheritable) x 2
    words[2] = words[5] = 0
    check(_capset(_CAP_HEADER, struct.pack("6I", *words)), "capset")


# Warm every ctypes path the child takes, in the parent (the child inherits the warm state).
clear_inheritable_caps()
prctl(PR_SET_PDEATHSIG, 0)

def _getsig(s):
    try:
        return signal.getsignal(s)
    except (OSError, ValueError):
        return None


# Stop signals are ignored: this process ends with the poolkeeper (stdin EOF, parent-death signal)
# and never before it, or its children would die at once (their parent-death signal) in the middle
# of the poolkeeper's graceful stop. A terminal's Ctrl-C reaches the whole foreground process group,
# this process too, and a service manager's stop (systemd's default) every process of the cgroup.
for _s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
    signal.signal(_s, signal.SIG_IGN)

# Signals ignored here (those above; Python ignores SIGPIPE and SIGXFSZ): an exec keeps an ignored
# signal ignored, so the child resets them (libuv resets all); handled ones are reset by the exec.
IGNORED = [
    s for s in range(1, signal.NSIG)
    if s not in (signal.SIGKILL, signal.SIGSTOP) and _getsig(s) == signal.SIG_IGN
]


SPAWNER_PID = os.getpid()
MAX_FD = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
if MAX_FD == resource.RLIM_INFINITY or MAX_FD <= 0:
    MAX_FD = 1 << 20


def child(req, fds, errw):
    """In the forked child: never returns. Any failure is written to errw and ends the child
    before the exec, so a command never runs with more privilege than asked."""
    stage = "setup"
    try:
        # Dispositions: Python ignores SIGPIPE (and exec keeps ignored signals), libuv resets all.
        signal.set_wakeup_fd(-1)
        for s in IGNORED:
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
        if os.getppid() != SPAWNER_PID:
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
        os.closerange(max(n, errw + 1), MAX_FD)
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


class Spawner:
    def __init__(self, sock_path):
        self.sock_path = sock_path
        self.sel = selectors.DefaultSelector()
        self.inbuf = b""
        self.live = {}  # pid -> id, until reaped
        self.pids = {}  # id -> pid, until reaped
        self.pending = {}  # error-pipe read fd -> (id, pid, chunks)
        self.unannounced = {}  # pid -> error-pipe fd: exit waits for the spawn result
        self.failed = set()  # pids whose spawn failed: their exit is not reported

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
            child(req, fds, errw)
        os.close(errw)
        for f in fds:
            if f is not None:
                os.close(f)
        self.live[pid] = rid
        self.pids[rid] = pid
        self.pending[errr] = (rid, pid, [])
        self.unannounced[pid] = errr
        self.sel.register(errr, selectors.EVENT_READ, ("err", pid))

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
        if type(value) is not int or not -20 <= value <= 19:
            sys.stderr.write("fizz-spawner: nice: nice must be an integer from -20 to 19\n")
            return
        pid = self.pids.get(rid)
        if pid is None:
            return  # reaped (its pid may be another process's by now) or unknown: refused
        try:
            fd = os.open("/proc/%d/autogroup" % pid, os.O_WRONLY | os.O_CLOEXEC)
            try:
                os.write(fd, str(value).encode())
            finally:
                os.close(fd)
        except OSError as e:
            sys.stderr.write("fizz-spawner: nice %s: %s\n" % (pid, e))

    def handle(self, line):
        try:
            req = json.loads(line)
        except ValueError:
            sys.stderr.write("fizz-spawner: unreadable request line\n")
            return
        op = req.get("op") if isinstance(req, dict) else None
        if op in ("spawn", "kill", "nice") and type(req.get("id")) is not int:
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


def main():
    if len(sys.argv) != 3:
        sys.stderr.write("usage: fizz_spawner.py SOCKET PARENT_PID\n")
        sys.exit(2)
    prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != int(sys.argv[2]):
        os._exit(1)  # the poolkeeper died before the prctl
    Spawner(sys.argv[1]).run()


if __name__ == "__main__":
    main()
