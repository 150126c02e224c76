#!/usr/bin/env python3
"""Fizz environment loader for Python functions: ``python3 server.py``.

Configured by PORT, HOST, FIZZ_INSTANCE_ID, FIZZ_WORKDIR, FIZZ_PARENT_STDIN and FIZZ_MAX_BODY_BYTES
(docs/runtime-contract.md). The code is in fizz_server.py: a script is compiled on every start, an
imported module loads from cached bytecode, and this is the cold-start path.
"""

import sys

# The loader's own modules are cached as bytecode even under PYTHONDONTWRITEBYTECODE (set in some
# developer shells): compiling them on every start costs 5-10 ms. Where the directory is
# read-only (the image compiles it at build time) nothing is written.
sys.dont_write_bytecode = False
try:
    from fizz_server import main
finally:
    # The function's code never writes bytecode: each instance has its own copy of the package,
    # loaded once, so a __pycache__ there is only writes no one reads, and the package directory
    # stays exactly what was deployed and checked against its digest. (A package's dependencies
    # come precompiled from pip at build time.)
    sys.dont_write_bytecode = True

if __name__ == "__main__":
    main()
