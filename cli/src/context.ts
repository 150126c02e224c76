/**
 * What every command needs, built once per invocation from the environment (main.ts) and the
 * global options (`-n`, `-o`), so no command reads process state itself.
 */
import type { Command } from "commander";
import { RegistryClient } from "./client.js";
import { CliError } from "./errors.js";
import type { FetchFn } from "./http.js";
import type { FoundToken } from "./token.js";
import { printJson, type OutputFormat, type Writable } from "./output.js";

/** Fixed for the whole invocation; comes from the process environment. */
export interface Config {
  registryUrl: string;
  gatewayUrl: string;
  fetch: FetchFn;
  /** The registry token (token.ts); throws a CliError when a token file exists but is unusable. */
  token: () => FoundToken | undefined;
  /** The largest --code file read (FIZZ_CODE_MAX_BYTES, as the registry's). */
  codeMaxBytes: number;
  /** The largest --body @file read (FIZZ_MAX_BODY_BYTES, as the gateway's). */
  bodyMaxBytes: number;
  stdout: Writable;
  stderr: Writable;
  now: () => number;
  /** Aborts on Ctrl-C; asking for it is what makes Ctrl-C a clean stop (exit 0). */
  interrupt: () => AbortSignal;
}

export interface Context extends Config {
  namespace: string;
  output: OutputFormat;
  registry: RegistryClient;
}

export type ContextFactory = (cmd: Command) => Context;

interface GlobalOptions {
  namespace: string;
  output: OutputFormat;
}

/** Commands whose `-o` is a file to write (the archive downloads), not an output format. */
const outputFileCommands = new WeakSet<Command>();

export function outputIsFile(cmd: Command): Command {
  outputFileCommands.add(cmd);
  return cmd;
}

export function takesOutputFile(cmd: Command): boolean {
  return outputFileCommands.has(cmd);
}

/** The `-o` of a download command: the path, or undefined when only the default is there. */
export function outputFile(cmd: Command): string | undefined {
  if (cmd.getOptionValueSourceWithGlobals("output") === "default") return undefined;
  return cmd.optsWithGlobals<{ output: string }>().output;
}

export function contextFactory(config: Config): ContextFactory {
  return (cmd) => {
    const globals = cmd.optsWithGlobals<GlobalOptions>();
    const { namespace } = globals;
    // A download's -o is its file; what it prints to stdout is the human line.
    const output = takesOutputFile(cmd) ? "table" : globals.output;
    const registryUrl = baseUrl("FIZZ_REGISTRY_URL", config.registryUrl);
    const gatewayUrl = baseUrl("FIZZ_GATEWAY_URL", config.gatewayUrl);
    const registry = new RegistryClient({
      baseUrl: registryUrl,
      namespace,
      fetch: config.fetch,
      token: config.token,
    });
    return { ...config, registryUrl, gatewayUrl, namespace, output, registry };
  };
}

function baseUrl(variable: string, value: string): string {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new CliError(`${variable} is not a valid URL: "${value}"`);
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    throw new CliError(`${variable} must be an http:// or https:// URL: "${value}"`);
  }
  // Paths are appended to it, and a trailing slash would double up.
  return value.replace(/\/+$/, "");
}

/**
 * After a write: scripts (`-o json`) get the object the registry answered, people get one line
 * saying what happened.
 */
export function confirm(ctx: Context, object: unknown, line: string): void {
  if (ctx.output === "json") printJson(ctx.stdout, object);
  else ctx.stdout.write(`${line}\n`);
}

/** kubectl prints this to stderr too, so `fizz fn list | wc -l` still counts only rows. */
export function reportEmpty(ctx: Context, what: string): void {
  ctx.stderr.write(`No ${what} found in namespace "${ctx.namespace}".\n`);
}
