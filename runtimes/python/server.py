#!/usr/bin/env python3
"""Fizz environment loader for Python functions: ``python3 server.py``.

Configured by PORT, HOST, FIZZ_INSTANCE_ID, FIZZ_WORKDIR, FIZZ_PARENT_STDIN and FIZZ_MAX_BODY_BYTES
(docs/runtime-contract.md). The code is in fizz_server.py: a script is compiled on every start, an
imported module loads from cached bytecode, and this is the cold-start path.
"""

import sys

# The loader's own modules are cached as bytecode even under PYTHONDONTWRITEBYTECODE (set in some
# developer shells, and inherited by every instance the process backend starts): compiling them
# on every start costs 5-10 ms. The function's own code still follows the setting. Where
# the directory is read-only (the image compiles it at build time) nothing is written.
_dont_write_bytecode = sys.dont_write_bytecode
sys.dont_write_bytecode = False
try:
    from fizz_server import main
finally:
    sys.dont_write_bytecode = _dont_write_bytecode

if __name__ == "__main__":
    main()
