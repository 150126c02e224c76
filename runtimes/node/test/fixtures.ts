// The Node.js runtime as the contract suite runs it, and the user functions (in JavaScript) the
// contract calls: see runtimes/contract/runtime-under-test.ts for what each must do.
import { startRuntime } from "../../contract/harness.js";
import type { PackageFixtures, RuntimeUnderTest, Source } from "../../contract/runtime-contract.js";
import { SERVER_ENTRY } from "./entry.js";

const SERVER = {
  name: "node",
  command: process.execPath,
  script: SERVER_ENTRY,
};

export const HELLO: Source = {
  filename: "hello.js",
  source: `module.exports = async (context) => ({ status: 200, body: "Hello, world!\\n" });\n`,
};

/**
 * The contract's kinds, plus the Node-only ones its own tests use: `nothing` (undefined),
 * `redirect` (a response object without a body), `sse` (a Readable of server-sent events, 150 ms
 * apart), `web-stream` (a web ReadableStream), and the extra echo fields `url`, `rawLength`,
 * `same` (context.body is request.body) and `bodyType`.
 */
export const KINDS: Source = {
  filename: "kinds.js",
  source: `
    const { Readable } = require("node:stream");
    const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
    module.exports = async (context) => {
      const { request } = context;
      switch (context.query.kind) {
        case "echo":
          return {
            method: context.method, path: context.path, query: context.query, url: request.url,
            headers: context.headers, body: context.body, params: context.params,
            function: context.function, requestId: context.requestId,
            bodyType: Buffer.isBuffer(context.body) ? "buffer" : typeof context.body,
            rawLength: request.rawBody.length, same: request.body === context.body,
          };
        case "text": return { text: request.rawBody.toString("utf8"), length: request.rawBody.length };
        case "json": return { hello: ["world"] };
        case "list": return [1, "two"];
        case "created": return { status: 201, headers: { "x-custom": "yes" }, body: { created: true } };
        case "accepted": return { status: 202, body: "accepted" };
        case "redirect": return { status: 302, headers: { location: "/elsewhere" } };
        case "not-a-response": return { status: "ok" };
        case "bytes": return Buffer.from([0, 1, 2, 255]);
        case "string": return "plain";
        case "nothing": return undefined;
        case "env": return process.env.GREETING;
        case "log": console.log("log line from the function"); return "logged";
        case "throw": throw new Error("boom from the function");
        case "unsendable": return { status: 42 }; // no such HTTP status
        case "sse": {
          async function* events() {
            for (let i = 1; i <= 3; i++) { yield "data: event " + i + "\\n\\n"; await sleep(150); }
          }
          return { headers: { "content-type": "text/event-stream" }, body: Readable.from(events()) };
        }
        case "web-stream": {
          const parts = ["web ", "stream"];
          return new ReadableStream({ pull(c) { const p = parts.shift(); p ? c.enqueue(p) : c.close(); } });
        }
        default: return "plain";
      }
    };
  `,
};

/** The call marker checks' function (runtimes/contract/contract-call-markers.ts). */
export const LOGS: Source = {
  filename: "logs.js",
  source: `
    const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
    module.exports = async ({ query: { kind, tag, ms } }) => {
      switch (kind) {
        case "both": console.log("out " + tag); console.error("err " + tag); return "printed";
        case "partial": process.stdout.write("part " + tag); return "partial";
        case "twice": console.log("one " + tag); await sleep(Number(ms)); console.log("two " + tag); return "twice";
        case "later": setTimeout(() => console.log("after " + tag), 300); return "later";
        case "raw":
          console.log("said " + tag);
          setTimeout(() => require("fs").writeSync(1, "raw " + tag + "\\n"), 200);
          return "ok";
        default: return "quiet";
      }
    };
  `,
};

/** The contract's configReader (runtimes/contract/runtime-under-test.ts). */
const CONFIG_READER: Source = {
  filename: "reader.js",
  source: `
    const fs = require("node:fs");
    const path = require("node:path");
    module.exports = async ({ query }) => {
      switch (query.kind) {
        case "file": return fs.readFileSync(path.join(process.env[query.dir], query.path), "utf8");
        case "env": return process.env[query.name] ?? "unset";
        case "relative": return fs.readFileSync(query.path, "utf8");
        default: return "unknown kind";
      }
    };
  `,
};

const PACKAGES: PackageFixtures = {
  main: "index.js",
  shapes: [
    {
      what: "file.fn whose file requires a module of the package",
      files: {
        "app.js":
          "const { greet } = require('./lib/greet');\nexports.handler = async () => greet('lib');\n",
        "lib/greet.js": "exports.greet = (who) => `hello from ${who}`;\n",
      },
      entrypoint: "app.handler",
      answer: "hello from lib",
    },
    {
      what: "the package.json main, without an entrypoint",
      files: {
        "package.json": JSON.stringify({ name: "app", main: "src/server.js" }),
        "src/server.js": "module.exports = async () => 'main';\n",
      },
      answer: "main",
    },
    {
      what: "a named export of the main of an ES module package (type module)",
      files: {
        "package.json": JSON.stringify({ type: "module" }),
        "index.js": "import { word } from './lib/word.js';\nexport const handler = () => word;\n",
        "lib/word.js": "export const word = 'esm';\n",
      },
      entrypoint: "handler",
      answer: "esm",
    },
    {
      what: "dir/file.fn in an .mjs file",
      files: { "lib/api.mjs": "export function handler() { return 'nested'; }\n" },
      entrypoint: "lib/api.handler",
      answer: "nested",
    },
    {
      what: "an ES module index.js without a package.json",
      files: {
        "index.js":
          "import { hostname } from 'node:os';\nexport default () => typeof hostname();\n",
      },
      answer: "string",
    },
  ],
  loadFailure: {
    files: {
      "index.js": "require('./lib/bad');\nmodule.exports = () => 1;\n",
      "lib/bad.js": "const a = 1;\nlet x y = 2;\n",
    },
    message: /^lib\/bad\.js:2: SyntaxError: Unexpected identifier 'y'$/,
  },
  configReader: CONFIG_READER,
};

export const nodeRuntime: RuntimeUnderTest = {
  name: "node",
  start: (env, options) => startRuntime(SERVER, env, options),
  fixtures: {
    hello: HELLO,
    foreignFilename: "hello.py",
    loadFailures: [
      {
        what: "a syntax error",
        filename: "hello.js",
        source: "module.exports = async () => 1;\n\nlet x y = 2;\n",
        message: "hello.js:3: SyntaxError: Unexpected identifier 'y'",
      },
      {
        what: "a syntax error in an ES module",
        filename: "hello.mjs",
        source: "export default () => 1;\nlet x y = 2;\n",
        message: "hello.mjs:2: SyntaxError: Unexpected identifier 'y'",
      },
      {
        what: "a throw at the top level",
        filename: "hello.js",
        source: "const a = 1;\nthrow new Error('boom');\n",
        message: "hello.js:2: Error: boom",
      },
      {
        what: "a missing dependency",
        filename: "hello.js",
        source: "\nconst pad = require('left-pad');\n",
        message: "hello.js:2: Error: Cannot find module 'left-pad'",
      },
      {
        what: "a missing entrypoint",
        filename: "hello.js",
        source: "module.exports = async () => 1;\n",
        entrypoint: "handler",
        message: 'hello.js: entrypoint "handler" is not an exported function',
      },
    ],
    handlerShapes: [
      {
        what: "module.exports = fn",
        filename: "hello.js",
        source: "module.exports = () => 'cjs';",
        answer: "cjs",
      },
      {
        what: "export default in a .js file",
        filename: "hello.js",
        source: "export default async () => 'esm-in-js';",
        answer: "esm-in-js",
      },
      {
        // The word is in a comment only: the compile (not the word) decides, and it says CommonJS.
        what: "module.exports = fn whose comment says import",
        filename: "hello.js",
        source:
          "// import { x } from 'y' would make this an ES module\nmodule.exports = () => 'cjs-comment';",
        answer: "cjs-comment",
      },
      {
        what: "an ES module .js file with an import and top-level await",
        filename: "hello.js",
        source:
          "import { setTimeout as wait } from 'node:timers/promises';\nconst v = await wait(1, 'esm-await');\nexport default () => v;",
        answer: "esm-await",
      },
      {
        what: "a named ES export chosen by the entrypoint",
        filename: "hello.mjs",
        source: "export const handler = () => 'mjs';",
        entrypoint: "handler",
        answer: "mjs",
      },
      {
        what: "file.fn in a .cjs file",
        filename: "hello.cjs",
        source: "exports.handler = () => 'cjs-named';",
        entrypoint: "hello.handler",
        answer: "cjs-named",
      },
      {
        what: "exports.default from a transpiler",
        filename: "hello.js",
        source: "exports.__esModule = true; exports.default = () => 'ts';",
        answer: "ts",
      },
    ],
    kinds: KINDS,
    slow: (ms, answer) => ({
      filename: "slow.js",
      source: `module.exports = async () => { await new Promise((r) => setTimeout(r, ${ms})); return ${JSON.stringify(answer)}; };`,
    }),
    tokenLeak: {
      filename: "leak.js",
      source: `module.exports = async () => ({ status: 200, body: process.env.FIZZ_SPECIALIZE_TOKEN ?? "absent" });\n`,
    },
    packages: PACKAGES,
  },
  callMarkers: { logs: LOGS, raw: true },
};
