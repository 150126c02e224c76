#!/usr/bin/env python3
"""Fizz environment loader for Python functions: ``python3 server.py``.

Configured by PORT, HOST, FIZZ_INSTANCE_ID, FIZZ_WORKDIR, FIZZ_PARENT_STDIN and FIZZ_MAX_BODY_BYTES
(docs/runtime-contract.md). The code is in fizz_server.py: a script is compiled on every start, an
imported module loads from cached bytecode, and this is the cold-start path.
"""

from fizz_server import main

if __name__ == "__main__":
    main()
