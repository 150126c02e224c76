// The Python runtime as the contract suite runs it (`python3` from PATH), and the user functions
// (in Python) the contract calls: see runtimes/contract/runtime-under-test.ts for what each must do.
import { fileURLToPath } from "node:url";
import { startRuntime } from "../../contract/harness.js";
import type { PackageFixtures, RuntimeUnderTest, Source } from "../../contract/runtime-contract.js";

const SERVER = {
  name: "python",
  command: "python3",
  script: fileURLToPath(new URL("../server.py", import.meta.url)),
};

/** Fission's hello world: main prints, returns None, and the call answers what it printed. */
export const HELLO: Source = {
  filename: "hello.py",
  source: `def main(context):\n    print("Hello, world!")\n`,
};

/** The contract's kinds, plus `printer`: prints `<id> <i>` five times, 20 ms apart, returns None. */
export const KINDS: Source = {
  filename: "kinds.py",
  source: [
    "import os, time",
    "",
    "def main(context):",
    "    kind = context.query.get('kind')",
    "    if kind == 'echo':",
    "        return {'method': context.method, 'path': context.path, 'query': context.query,",
    "                'headers': context.headers, 'body': context.json(), 'params': context.params,",
    "                'requestId': context.request_id, 'function': context.function}",
    "    if kind == 'text':",
    "        return {'text': context.text(), 'length': len(context.body)}",
    "    if kind == 'json':",
    "        return {'hello': ['world']}",
    "    if kind == 'list':",
    "        return [1, 'two']",
    "    if kind == 'created':",
    "        return {'created': True}, 201, {'X-Custom': 'yes'}",
    "    if kind == 'accepted':",
    "        return 'accepted', 202",
    "    if kind == 'not-a-response':",
    "        return {'status': 'ok'}",
    "    if kind == 'bytes':",
    "        return bytes([0, 1, 2, 255])",
    "    if kind == 'env':",
    "        return os.environ['GREETING']",
    "    if kind == 'log':",
    "        print('log line from the function')",
    "        return 'logged'",
    "    if kind == 'throw':",
    "        raise ValueError('boom from the function')",
    "    if kind == 'printer':",
    "        for i in range(5):",
    "            print(context.query['id'], i)",
    "            time.sleep(0.02)",
    "        return None",
    "    if kind == 'unsendable':",
    "        return 42",
    "    return 'plain'",
    "",
  ].join("\n"),
};

/** The contract's configReader (runtimes/contract/runtime-under-test.ts). */
const CONFIG_READER: Source = {
  filename: "reader.py",
  source: [
    "import os",
    "",
    "def main(context):",
    "    q = context.query",
    "    if q.get('kind') == 'file':",
    "        with open(os.path.join(os.environ[q['dir']], q['path'])) as f:",
    "            return f.read()",
    "    if q.get('kind') == 'env':",
    "        return os.environ.get(q['name'], 'unset')",
    "    if q.get('kind') == 'relative':",
    "        with open(q['path']) as f:",
    "            return f.read()",
    "    return 'unknown kind'",
    "",
  ].join("\n"),
};

const PACKAGES: PackageFixtures = {
  main: "main.py",
  shapes: [
    {
      what: "main.main importing a sibling module, without an entrypoint",
      files: {
        "main.py": "from helper import word\n\ndef main():\n    return word()\n",
        "helper.py": "def word():\n    return 'sibling'\n",
      },
      answer: "sibling",
    },
    {
      what: "dir/mod.fn importing another module of its directory",
      files: {
        "api/handlers.py":
          "from api.util import shout\n\ndef get(context):\n    return shout('nested')\n",
        "api/util.py": "def shout(s):\n    return s.upper()\n",
      },
      entrypoint: "api/handlers.get",
      answer: "NESTED",
    },
    {
      what: "pkg.mod.fn in a package with a relative import",
      files: {
        "pkg/__init__.py": "",
        "pkg/mod.py": "from . import helper\n\ndef fn():\n    return helper.X\n",
        "pkg/helper.py": "X = 'relative'\n",
      },
      entrypoint: "pkg.mod.fn",
      answer: "relative",
    },
    {
      what: "a bare function name, in main.py",
      files: { "main.py": "def handler():\n    return 'bare'\n" },
      entrypoint: "handler",
      answer: "bare",
    },
  ],
  loadFailure: {
    files: {
      "main.py": "import helper\n\ndef main():\n    return 1\n",
      "helper.py": "x = 1\nraise RuntimeError('boom in helper')\n",
    },
    message: /^helper\.py:2: RuntimeError: boom in helper$/,
  },
  configReader: CONFIG_READER,
};

/** The call marker checks' function (runtimes/contract/contract-call-markers.ts). */
export const LOGS: Source = {
  filename: "logs.py",
  source: [
    "import os, sys, threading, time",
    "",
    "def main(context):",
    "    kind, tag = context.query.get('kind'), context.query.get('tag')",
    "    if kind == 'both':",
    "        print('out ' + tag)",
    "        print('err ' + tag, file=sys.stderr)",
    "        return 'printed'",
    "    if kind == 'partial':",
    "        print('part ' + tag, end='')",
    "        return 'partial'",
    "    if kind == 'twice':",
    "        print('one ' + tag)",
    "        time.sleep(int(context.query['ms']) / 1000)",
    "        print('two ' + tag)",
    "        return 'twice'",
    "    if kind == 'later':",
    "        threading.Timer(0.3, print, ['after ' + tag]).start()",
    "        return 'later'",
    "    if kind == 'raw':",
    "        print('said ' + tag, flush=True)",
    "        threading.Timer(0.2, os.write, [1, ('raw ' + tag + '\\n').encode()]).start()",
    "        return 'ok'",
    "    return 'quiet'",
    "",
  ].join("\n"),
};

export const pythonRuntime: RuntimeUnderTest = {
  name: "python",
  start: (env, options) => startRuntime(SERVER, env, options),
  fixtures: {
    hello: HELLO,
    foreignFilename: "hello.js",
    loadFailures: [
      {
        what: "Fission's Python 2 hello world",
        filename: "hello.py",
        source: `def main():\n    print "Hello, world!"\n`,
        message:
          /^hello\.py:2: SyntaxError: Missing parentheses in call to 'print'\. Did you mean print\(.*\)\?$/,
      },
      {
        what: "an indentation error",
        filename: "hello.py",
        source: `def main():\nreturn 1\n`,
        message: /^hello\.py:2: IndentationError: /,
      },
      {
        what: "a raise at the top level",
        filename: "hello.py",
        source: `x = 1\nraise RuntimeError("boom")\n`,
        message: /^hello\.py:2: RuntimeError: boom$/,
      },
      {
        what: "a missing module",
        filename: "hello.py",
        source: `\nimport left_pad\n`,
        message: /^hello\.py:2: ModuleNotFoundError: No module named 'left_pad'$/,
      },
      {
        what: "a missing entrypoint",
        filename: "hello.py",
        source: `def main(context):\n    return "x"\n`,
        entrypoint: "handler",
        message: /^hello\.py: entrypoint "handler" is not a function/,
      },
      {
        what: "no main at all",
        filename: "hello.py",
        source: `x = 1\n`,
        message: /^hello\.py: entrypoint "main" is not a function/,
      },
    ],
    handlerShapes: [
      {
        what: "def main() without parameters",
        filename: "hello.py",
        source: `def main():\n    return "no-params"\n`,
        answer: "no-params",
      },
      {
        what: "a function named by the entrypoint",
        filename: "hello.py",
        source: `def handler(context):\n    return "named"\n`,
        entrypoint: "handler",
        answer: "named",
      },
      {
        what: "file.fn",
        filename: "hello.py",
        source: `def handler(context):\n    return "file-fn"\n`,
        entrypoint: "hello.handler",
        answer: "file-fn",
      },
    ],
    kinds: KINDS,
    slow: (ms, answer) => ({
      filename: "slow.py",
      source: `import time\n\ndef main():\n    time.sleep(${ms / 1000})\n    return ${JSON.stringify(answer)}\n`,
    }),
    tokenLeak: {
      filename: "leak.py",
      source: `import os\n\ndef main():\n    return os.environ.get("FIZZ_SPECIALIZE_TOKEN", "absent")\n`,
    },
    packages: PACKAGES,
  },
  callMarkers: { logs: LOGS, raw: true },
};
