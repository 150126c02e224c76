"""Fizz's instance spawner (run as runtimes/spawner/fizz_spawner.py): forks and execs function
instances for the poolkeeper.

Why a separate process: libuv's spawn forks the whole 60-90 MB poolkeeper and blocks its event
loop until the child has exec'd (~7-10 ms), and setpriv costs another exec (~3-8 ms). This process
is small, so its fork is cheap, and it drops the instance's privileges itself before the one exec.

Modules: privs (prctl and capabilities through libc, looked up once), child (what the forked
child does before its exec), killpass (a uid clean-up's kill pass, in a fork), server (the
request loop, the children's bookkeeping and reaping).

Protocol (one JSON object per line; stdlib only, run by Debian's /usr/bin/python3 as root):
  stdin  {"op":"spawn","id":N,"token":HEX32,"file":F,"args":[argv0,...],"env":{...},"cwd":D,
          "uid":U|null,"nproc":L|null,"stdio":["pipe"|"ignore", x3 or x4]}
         {"op":"kill","id":N,"signal":S}  (the child's process group; refused once it is reaped)
         {"op":"nice","id":N,"nice":K}  (the child's autogroup, -20..19; refused once it is reaped)
         {"op":"killpass","id":N,"ruid":R,"uid":U,"lock":L,"by":MS}  (a uid clean-up's kill
                                                 pass, forked: killpass.py; L "" for none; it
                                                 signals nothing once CLOCK_MONOTONIC is past MS)
  stdout {"ev":"hello","pid":P}
         {"ev":"spawned","id":N,"pid":P}   (the child exec'd)
         {"ev":"error","id":N,"stage":...,"code":"EPERM","errno":1,"message":...} (nothing ran)
         {"ev":"exit","id":N,"code":C|null,"signal":"SIGKILL"|null}
         {"ev":"passed","id":N,"code":C|null}  (the kill pass's exit code once reaped; null: it
                                                 was refused, did not start, or died of a signal)
         {"ev":"niced","id":N,"ok":true|false}  (each nice request's answer, in order; false:
                                                 refused, or failed with the reason on stderr)
Each "pipe" descriptor i of a spawn is a connection to the poolkeeper's Unix socket (argv[1]),
which first carries the header "<token> <i>\n" (35 bytes), so the poolkeeper can tell which pending
spawn and descriptor it is: Node cannot receive descriptors from another process.
Exits with the poolkeeper: stdin EOF, and PR_SET_PDEATHSIG(SIGKILL); its children have the same
parent-death signal, so none outlives it.
"""
