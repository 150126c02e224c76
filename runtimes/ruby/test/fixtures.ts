// The Ruby runtime as the contract suite runs it (`ruby` from PATH), and the user functions (in
// Ruby) the contract calls: see runtimes/contract/runtime-under-test.ts for what each must do.
import { fileURLToPath } from "node:url";
import { startRuntime } from "../../contract/harness.js";
import type { PackageFixtures, RuntimeUnderTest, Source } from "../../contract/runtime-contract.js";

const SERVER = {
  name: "ruby",
  command: process.env.FIZZ_RUBY ?? "ruby",
  script: fileURLToPath(new URL("../server.rb", import.meta.url)),
};

/** Fission's hello world (fission/examples ruby/hello.rb): a String answers 200. */
export const HELLO: Source = {
  filename: "hello.rb",
  source: `def handler\n  "Hello, world!\\n"\nend\n`,
};

/** The contract's kinds. */
export const KINDS: Source = {
  filename: "kinds.rb",
  source: [
    "def handler(context)",
    "  case context.query['kind']",
    "  when 'echo'",
    "    { method: context.method, path: context.path, query: context.query,",
    "      headers: context.headers, body: context.json, params: context.params,",
    "      requestId: context.request_id, function: context.function }",
    "  when 'text' then { text: context.text, length: context.body.bytesize }",
    "  when 'json' then { hello: ['world'] }",
    "  when 'list' then [1, 'two']",
    "  when 'created'",
    "    [201, { 'X-Custom' => 'yes', 'Content-Type' => 'application/json' }, [JSON.generate(created: true)]]",
    "  when 'accepted' then [202, {}, ['accepted']]",
    "  when 'not-a-response' then { status: 'ok' }",
    "  when 'bytes' then [0, 1, 2, 255].pack('C*')",
    "  when 'env' then ENV['GREETING']",
    "  when 'log'",
    "    puts 'log line from the function'",
    "    'logged'",
    "  when 'throw' then raise 'boom from the function'",
    "  when 'unsendable' then Object.new",
    "  else 'plain'",
    "  end",
    "end",
    "",
  ].join("\n"),
};

/** The contract's configReader (runtimes/contract/runtime-under-test.ts). */
const CONFIG_READER: Source = {
  filename: "reader.rb",
  source: [
    "def handler(context)",
    "  q = context.query",
    "  case q['kind']",
    "  when 'file' then File.read(File.join(ENV[q['dir']], q['path']))",
    "  when 'env' then ENV.fetch(q['name'], 'unset')",
    "  when 'relative' then File.read(q['path'])",
    "  else 'unknown kind'",
    "  end",
    "end",
    "",
  ].join("\n"),
};

const PACKAGES: PackageFixtures = {
  main: "main.rb",
  shapes: [
    {
      what: "handler calling a method of a sibling file, without an entrypoint (every file loads, as Fission's)",
      files: {
        "main.rb": "def handler\n  word\nend\n",
        "helper.rb": "def word\n  'sibling'\nend\n",
      },
      answer: "sibling",
    },
    {
      what: "dir/file.fn requiring another file of its directory",
      files: {
        "api/handlers.rb":
          "require_relative 'util'\n\ndef get(context)\n  Util.shout('nested')\nend\n",
        "api/util.rb": "module Util\n  def self.shout(s) = s.upcase\nend\n",
      },
      entrypoint: "api/handlers.get",
      answer: "NESTED",
    },
    {
      what: "file.fn whose file requires another by name (the package is on $LOAD_PATH)",
      files: {
        "app.rb": "require 'lib/greeting'\n\ndef handler\n  Greeting::TEXT\nend\n",
        "lib/greeting.rb": "module Greeting\n  TEXT = 'loaded by require'\nend\n",
      },
      entrypoint: "app.handler",
      answer: "loaded by require",
    },
    {
      what: "a bare method name",
      files: { "main.rb": "def bare\n  'bare'\nend\n" },
      entrypoint: "bare",
      answer: "bare",
    },
  ],
  loadFailure: {
    files: {
      "main.rb": "require_relative 'helper'\n\ndef handler\n  1\nend\n",
      "helper.rb": "x = 1\nraise 'boom in helper'\n",
    },
    message: /^helper\.rb:2: RuntimeError: boom in helper$/,
  },
  configReader: CONFIG_READER,
};

/** The call marker checks' function (runtimes/contract/contract-call-markers.ts). */
export const LOGS: Source = {
  filename: "logs.rb",
  source: [
    "def handler(context)",
    "  tag = context.query['tag']",
    "  case context.query['kind']",
    "  when 'both' then puts \"out #{tag}\"; warn \"err #{tag}\"; 'printed'",
    "  when 'partial' then print \"part #{tag}\"; 'partial'",
    "  when 'twice' then puts \"one #{tag}\"; sleep(context.query['ms'].to_i / 1000.0); puts \"two #{tag}\"; 'twice'",
    "  when 'later' then Thread.new { sleep 0.3; puts \"after #{tag}\" }; 'later'",
    "  when 'raw' then puts \"said #{tag}\"; Thread.new { sleep 0.2; STDOUT.syswrite(\"raw #{tag}\\n\") }; 'ok'",
    "  else 'quiet'",
    "  end",
    "end",
    "",
  ].join("\n"),
};

export const rubyRuntime: RuntimeUnderTest = {
  name: "ruby",
  start: (env, options) => startRuntime(SERVER, env, options),
  fixtures: {
    hello: HELLO,
    foreignFilename: "hello.py",
    loadFailures: [
      {
        what: "a syntax error",
        filename: "hello.rb",
        source: `def handler\n  "x"\n`,
        message: /^hello\.rb:2: SyntaxError: syntax error, unexpected end-of-input/,
      },
      {
        what: "a raise at the top level",
        filename: "hello.rb",
        source: `x = 1\nraise "boom"\n`,
        message: /^hello\.rb:2: RuntimeError: boom$/,
      },
      {
        what: "a missing library",
        filename: "hello.rb",
        source: `\nrequire "left_pad"\n`,
        message: /^hello\.rb:2: LoadError: cannot load such file -- left_pad$/,
      },
      {
        what: "exit at the top level",
        filename: "hello.rb",
        source: `\nexit 3\n`,
        message: /^hello\.rb:2: SystemExit: exit$/,
      },
      {
        what: "a missing entrypoint",
        filename: "hello.rb",
        source: `def handler(context)\n  "x"\nend\n`,
        entrypoint: "main",
        message: /^hello\.rb: entrypoint "main" is not a method defined by the code/,
      },
      {
        what: "no handler at all",
        filename: "hello.rb",
        source: `x = 1\n`,
        message: /^hello\.rb: entrypoint "handler" is not a method defined by the code/,
      },
      {
        what: "a Kernel method named as the entrypoint",
        filename: "hello.rb",
        source: `x = 1\n`,
        entrypoint: "puts",
        message: /^hello\.rb: entrypoint "puts" is not a method defined by the code/,
      },
      {
        what: "a handler taking two arguments",
        filename: "hello.rb",
        source: `def handler(a, b)\n  "x"\nend\n`,
        message: /^hello\.rb: entrypoint "handler" must take one argument \(context\) or none$/,
      },
    ],
    handlerShapes: [
      {
        what: "Fission's def handler without parameters",
        filename: "hello.rb",
        source: `def handler\n  "no-params"\nend\n`,
        answer: "no-params",
      },
      {
        what: "Fission's def handler(context) reading the Rack request",
        filename: "hello.rb",
        source: `def handler(context)\n  context.request.request_method + " " + context.request.path\nend\n`,
        answer: "GET /",
      },
      {
        what: "Fission's Rack triple",
        filename: "hello.rb",
        source: `def handler\n  [200, {}, ["triple"]]\nend\n`,
        answer: "triple",
      },
      {
        what: "Fission's Rack::Response#finish",
        filename: "hello.rb",
        source: `def handler(context)\n  Rack::Response.new(["finished"]).finish\nend\n`,
        answer: "finished",
      },
      {
        what: "a method named by the entrypoint",
        filename: "hello.rb",
        source: `def main(context)\n  "named"\nend\n`,
        entrypoint: "main",
        answer: "named",
      },
      {
        what: "file.fn",
        filename: "hello.rb",
        source: `def main(context)\n  "file-fn"\nend\n`,
        entrypoint: "hello.main",
        answer: "file-fn",
      },
    ],
    kinds: KINDS,
    slow: (ms, answer) => ({
      filename: "slow.rb",
      source: `def handler\n  sleep(${ms / 1000})\n  ${JSON.stringify(answer)}\nend\n`,
    }),
    tokenLeak: {
      filename: "leak.rb",
      source: `def handler\n  ENV.fetch("FIZZ_SPECIALIZE_TOKEN", "absent")\nend\n`,
    },
    packages: PACKAGES,
  },
  callMarkers: { logs: LOGS, raw: true },
};
