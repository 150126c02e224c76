// A custom environment as the conformance suite sees it: a directory with `fizz-runtime.json`
// saying how to start its runtime and where its core fixtures are (docs/runtime-contract.md,
// "Conformance suite"):
//   {"name": "perl", "command": ["perl", "server.pl"],
//    "fixtures": {"hello": "fixtures/hello.pl", "echo": "fixtures/echo.pl",
//                 "slow": "fixtures/slow.pl", "throws": "fixtures/throws.pl",
//                 "tokenLeak": "fixtures/token-leak.pl",
//                 "loadFailure": {"file": "fixtures/broken.pl", "line": 3}},
//    "packages": false,
//    "callMarkers": {"fixture": "fixtures/logs.pl", "later": false, "concurrent": false},
//    "twicePrinter": "fixtures/twice.pl"}
// The command runs with the directory as its working directory; each fixture is a file path
// relative to the directory, or {"file": ..., "entrypoint": ...}. `packages` (optional, default
// false) says the runtime also loads the archive form of specialize. `callMarkers` (optional: an
// environment may log without request ids) says it prints call markers, with the function their
// checks call (contract-call-markers.ts) and what the language allows (both default true).
// `twicePrinter` (optional, for an environment without call markers) is a function whose `twice`
// kind prints `one <tag>`, waits `ms`, prints `two <tag>` on stdout: without it the abandoned-call
// check cannot see whether an abandoned call's function runs on beside the next calls.
import { existsSync, readFileSync, statSync } from "node:fs";
import path from "node:path";
import type { CallMarkers } from "./contract-call-markers.js";
import type { CoreFixtures, CoreRuntimeUnderTest } from "./contract-core.js";
import { startRuntime } from "./harness.js";
import type { Source } from "./runtime-under-test.js";

export const CONFIG_FILE = "fizz-runtime.json";

const FIXTURES = ["hello", "echo", "slow", "throws", "tokenLeak", "loadFailure"] as const;

class ConfigError extends Error {}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function readSource(dir: string, field: string, spec: unknown, under = "fixtures."): Source {
  const where = `${CONFIG_FILE}: ${under}${field}`;
  const { file, entrypoint } = isRecord(spec) ? spec : { file: spec, entrypoint: undefined };
  if (typeof file !== "string" || file === "") {
    throw new ConfigError(`${where} must be a file path, or {"file": ..., "entrypoint": ...}`);
  }
  if (entrypoint !== undefined && typeof entrypoint !== "string") {
    throw new ConfigError(`${where}.entrypoint must be a string`);
  }
  const full = path.resolve(dir, file);
  if (!existsSync(full) || !statSync(full).isFile()) {
    throw new ConfigError(`${where}: no file ${full}`);
  }
  const source = readFileSync(full, "utf8");
  return { filename: path.basename(full), source, ...(entrypoint ? { entrypoint } : {}) };
}

/** Reads and checks `<dir>/fizz-runtime.json`; throws a message naming what is wrong. */
export function loadCustomEnv(dir: string): CoreRuntimeUnderTest {
  const root = path.resolve(dir);
  const file = path.join(root, CONFIG_FILE);
  if (!existsSync(file)) throw new ConfigError(`${root} has no ${CONFIG_FILE}`);
  let config: unknown;
  try {
    config = JSON.parse(readFileSync(file, "utf8"));
  } catch (error) {
    throw new ConfigError(`${file} is not JSON: ${String(error)}`);
  }
  if (!isRecord(config)) throw new ConfigError(`${file} must hold a JSON object`);
  const { name, command, fixtures, packages = false, callMarkers, twicePrinter } = config;
  if (typeof name !== "string" || !/^[a-z0-9][a-z0-9-]*$/.test(name)) {
    throw new ConfigError(`${CONFIG_FILE}: "name" must be a lower-case name like "perl"`);
  }
  if (
    !Array.isArray(command) ||
    command.length === 0 ||
    !command.every((a): a is string => typeof a === "string" && a !== "")
  ) {
    throw new ConfigError(`${CONFIG_FILE}: "command" must be a non-empty argv array of strings`);
  }
  if (typeof packages !== "boolean") {
    throw new ConfigError(`${CONFIG_FILE}: "packages" must be true or false`);
  }
  if (!isRecord(fixtures)) throw new ConfigError(`${CONFIG_FILE}: "fixtures" must be an object`);
  const missing = FIXTURES.filter((f) => fixtures[f] === undefined);
  if (missing.length) {
    throw new ConfigError(`${CONFIG_FILE}: fixtures lacks ${missing.join(", ")}`);
  }
  const failure = fixtures.loadFailure;
  const line = isRecord(failure) ? failure.line : undefined;
  if (typeof line !== "number" || !Number.isInteger(line) || line < 1) {
    throw new ConfigError(
      `${CONFIG_FILE}: fixtures.loadFailure must be {"file": ..., "line": <the line that fails>}`,
    );
  }
  const core: CoreFixtures = {
    hello: readSource(root, "hello", fixtures.hello),
    echo: readSource(root, "echo", fixtures.echo),
    slow: readSource(root, "slow", fixtures.slow),
    throws: readSource(root, "throws", fixtures.throws),
    tokenLeak: readSource(root, "tokenLeak", fixtures.tokenLeak),
    loadFailure: { ...readSource(root, "loadFailure", failure), line },
  };
  const [program, ...args] = command;
  const run = { name, command: program ?? "", args, cwd: root };
  const markers = callMarkers === undefined ? {} : { callMarkers: readMarkers(root, callMarkers) };
  const printer =
    twicePrinter === undefined
      ? {}
      : { twicePrinter: readSource(root, "twicePrinter", twicePrinter, "") };
  return {
    name,
    start: (env, options) => startRuntime(run, env, options),
    fixtures: core,
    packages,
    ...markers,
    ...printer,
  };
}

function readMarkers(root: string, spec: unknown): CallMarkers {
  const usage = `${CONFIG_FILE}: "callMarkers" must be {"fixture": <file>, "later"?: true|false, "concurrent"?: true|false}`;
  if (!isRecord(spec)) throw new ConfigError(usage);
  const { fixture, later = true, concurrent = true, ...rest } = spec;
  if (typeof later !== "boolean" || typeof concurrent !== "boolean") throw new ConfigError(usage);
  const unknown = Object.keys(rest);
  if (unknown.length) throw new ConfigError(`${usage}; unknown: ${unknown.join(", ")}`);
  return { logs: readSource(root, "callMarkers.fixture", fixture, ""), later, concurrent };
}
