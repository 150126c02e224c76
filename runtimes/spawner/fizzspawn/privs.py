"""prctl and capabilities through libc (ctypes), for the spawner and, after its fork, the child."""

import ctypes
import os
import struct

PR_SET_PDEATHSIG = 1
PR_SET_NO_NEW_PRIVS = 38
LINUX_CAPABILITY_VERSION_3 = 0x20080522

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
