/**
 * The `fizz` CLI. `run()` is the whole program: argv and the process environment in, an exit
 * status out, with every side channel (stdout, stderr, fetch, clock) injected so tests drive the
 * real CLI in-process. This is the only file that reads process state.
 *
 * Exit status: 0 success, 1 the operation failed (API error, unreachable server, unreadable
 * file), 2 the command line was wrong (commander's usage errors, and ours).
 */
import { readFileSync, realpathSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { Command, CommanderError, Option } from "commander";
import { registerEnvCommands } from "./commands/env.js";
import { registerConfigCommands } from "./commands/config.js";
import { registerFnCommands } from "./commands/fn.js";
import { registerPkgCommands } from "./commands/pkg.js";
import { registerMqtCommands } from "./commands/mqt.js";
import { registerRouteCommands } from "./commands/route.js";
import { registerSpecCommands } from "./commands/spec.js";
import { registerTimerCommands } from "./commands/timer.js";
import { registerWatchCommands } from "./commands/watch.js";
import { contextFactory, takesOutputFile, type Config } from "./context.js";
import { ApiError, CliError } from "./errors.js";
import type { FetchFn } from "./http.js";
import { findToken, type FoundToken } from "./token.js";
import { OUTPUT_FORMATS, type Writable } from "./output.js";

export const DEFAULT_REGISTRY_URL = "http://127.0.0.1:8081";
export const DEFAULT_GATEWAY_URL = "http://127.0.0.1:8080";
/** The registry's and the gateway's defaults: a bigger file would be refused after the upload. */
export const DEFAULT_CODE_MAX_BYTES = 8 * 1024 * 1024;
export const DEFAULT_BODY_MAX_BYTES = 16 * 1024 * 1024;

export interface RunIO {
  env: Record<string, string | undefined>;
  stdout: Writable;
  stderr: Writable;
  /** Defaults to the global fetch. */
  fetch?: FetchFn;
  /** Milliseconds since the epoch; injected so AGE columns are deterministic in tests. */
  now?: () => number;
  /** Where the search for `.fizz/admin-token` starts; defaults to the process's. */
  cwd?: string;
  /** Ctrl-C for commands that stop cleanly on it (`fn logs -f`); defaults to the process's SIGINT. */
  interrupt?: AbortSignal;
}

/** Runs one `fizz` invocation; `argv` excludes the node and script paths. */
export async function run(argv: string[], io: RunIO): Promise<number> {
  const cwd = io.cwd ?? process.cwd();
  let token: { found: FoundToken | undefined } | undefined;
  if (argv.length === 1 && (argv[0] === "--version" || argv[0] === "-V")) {
    io.stdout.write(`${version()}\n`);
    return 0;
  }
  try {
    const config: Config = {
      // Validated when a command needs them (context.ts), so a bad value never blocks --help.
      registryUrl: io.env.FIZZ_REGISTRY_URL?.trim() || DEFAULT_REGISTRY_URL,
      gatewayUrl: io.env.FIZZ_GATEWAY_URL?.trim() || DEFAULT_GATEWAY_URL,
      fetch: io.fetch ?? globalThis.fetch,
      token: () => (token ??= { found: findToken(io.env, cwd) }).found,
      codeMaxBytes: sizeLimit(io.env, "FIZZ_CODE_MAX_BYTES", DEFAULT_CODE_MAX_BYTES),
      bodyMaxBytes: sizeLimit(io.env, "FIZZ_MAX_BODY_BYTES", DEFAULT_BODY_MAX_BYTES),
      stdout: io.stdout,
      stderr: io.stderr,
      now: io.now ?? Date.now,
      interrupt: () => io.interrupt ?? sigint(),
    };
    await buildProgram(config, io.env).parseAsync(argv, { from: "user" });
    return 0;
  } catch (err) {
    return report(err, io);
  }
}

function buildProgram(config: Config, env: RunIO["env"]): Command {
  const program = new Command("fizz")
    .description(
      "Fizz: functions as a service. Manage environments, functions, their packages, secrets and configmaps, and their triggers: HTTP routes, message queues, timers and Kubernetes watches.",
    )
    // Not commander's .version(): that one takes `--version` anywhere on the line, so Fission's
    // `fizz env create --version 3` would print our version and create nothing. run() answers a
    // leading `--version` / `-V` itself.
    .addHelpText("after", "\nfizz --version (or -V) prints the CLI's version.")
    .addOption(new Option("-n, --namespace <namespace>", "namespace to work in").default("default"))
    .addOption(
      new Option(
        "-o, --output <format>",
        `output format: ${OUTPUT_FORMATS.join(" or ")} ("pkg getsrc/getdeploy": the file to write)`,
      ).default("table"),
    )
    // Subcommands inherit these settings, so they must come before any .command().
    .exitOverride()
    .configureOutput({
      writeOut: (s) => config.stdout.write(s),
      writeErr: (s) => config.stderr.write(s),
    })
    .showHelpAfterError("(add --help for usage)")
    .addHelpText(
      "after",
      `
Environment:
  FIZZ_REGISTRY_URL  registry (control plane) address, default ${DEFAULT_REGISTRY_URL}
  FIZZ_GATEWAY_URL   gateway address used by "fn test", default ${DEFAULT_GATEWAY_URL}
  FIZZ_TOKEN         registry token; default: .fizz/admin-token in this or the nearest parent
                     directory (where "npm start" runs), or $FIZZ_DATA_DIR/admin-token

Get started:
  fizz env create --name node --image fizz/env-node
  fizz fn create --name hello --env node --code hello.mjs --route /hello
  curl ${DEFAULT_GATEWAY_URL}/hello`,
    );

  // Checked here rather than with .choices(): for the download commands -o names a file (as in
  // Fission), and global options are parsed before commander knows the subcommand.
  program.hook("preAction", (_program, action) => {
    const output = action.optsWithGlobals<{ output: string }>().output;
    if (takesOutputFile(action) || (OUTPUT_FORMATS as readonly string[]).includes(output)) return;
    action.error(
      `error: option '-o, --output <format>' argument '${output}' is invalid. Allowed choices are ${OUTPUT_FORMATS.join(", ")}.`,
      { exitCode: 2, code: "commander.invalidArgument" },
    );
  });

  const context = contextFactory(config);
  registerEnvCommands(program, context);
  registerFnCommands(program, context);
  registerPkgCommands(program, context);
  registerConfigCommands(program, context);
  registerRouteCommands(program, context);
  registerMqtCommands(program, context);
  registerTimerCommands(program, context);
  registerWatchCommands(program, context);
  // Specs substitute ${VARIABLES} from the environment the CLI was started with.
  registerSpecCommands(program, context, env);
  return program;
}

/** Prints a failure the way the exit-status contract above describes; returns the status. */
function report(err: unknown, io: RunIO): number {
  // commander has already printed its message (and help, for --help and bare `fizz`).
  if (err instanceof CommanderError) return err.exitCode === 0 ? 0 : 2;
  if (err instanceof CliError) {
    io.stderr.write(`Error: ${err instanceof ApiError ? err.describe() : err.message}\n`);
    if (err.hint) io.stderr.write(`${err.hint}\n`);
  } else {
    // Not an error we anticipated: keep the message readable, but let a bug report get the stack.
    const message = err instanceof Error ? err.message : String(err);
    io.stderr.write(`Error: ${message}\n`);
    if (io.env.FIZZ_DEBUG && err instanceof Error && err.stack) io.stderr.write(`${err.stack}\n`);
  }
  return 1;
}

/** Installed only when a command asks, so Ctrl-C still kills every other command at once. */
function sigint(): AbortSignal {
  const ac = new AbortController();
  process.once("SIGINT", () => ac.abort());
  return ac.signal;
}

function sizeLimit(
  env: Record<string, string | undefined>,
  name: string,
  fallback: number,
): number {
  const v = env[name]?.trim();
  if (!v) return fallback;
  const n = Number(v);
  if (!Number.isSafeInteger(n) || n < 1)
    throw new CliError(`${name} must be a positive number of bytes, got "${v}"`);
  return n;
}

function version(): string {
  const pkg = new URL("../package.json", import.meta.url);
  return (JSON.parse(readFileSync(pkg, "utf8")) as { version: string }).version;
}

/**
 * bin/fizz.js imports this module; tests import it too and only call run(). Compare real paths
 * because npm's bin link (node_modules/.bin/fizz) is a symlink to bin/fizz.js.
 */
function isEntryPoint(): boolean {
  const script = process.argv[1];
  if (!script) return false;
  let actual: string;
  try {
    actual = realpathSync(script);
  } catch {
    return false;
  }
  const here = fileURLToPath(import.meta.url);
  return actual === here || actual === fileURLToPath(new URL("../bin/fizz.js", import.meta.url));
}

if (isEntryPoint()) {
  // `fizz fn get --code | head` closes the pipe early; that is not an error worth a stack trace.
  process.stdout.on("error", (err: NodeJS.ErrnoException) => {
    if (err.code === "EPIPE") process.exit(0);
    throw err;
  });
  process.exitCode = await run(process.argv.slice(2), {
    env: process.env,
    stdout: process.stdout,
    stderr: process.stderr,
  });
}
