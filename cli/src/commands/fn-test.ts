/**
 * `fizz fn test`: one request through the gateway's built-in `/function/<name>` route, so a
 * function can be tried before (or without) giving it an HTTP trigger. The response body goes to
 * stdout byte for byte, so it can be piped into jq or a file.
 */
import type { Command } from "commander";
import { readBody } from "../code.js";
import type { Context, ContextFactory } from "../context.js";
import { CliError } from "../errors.js";
import { errorFromResponse, isSuccess, send } from "../http.js";
import { collectHeaders, joinQuery, parseDuration } from "../options.js";
import { fissionFlags } from "./fission-flags.js";

interface TestOptions {
  name: string;
  body?: string;
  header?: Array<[string, string]>;
  method?: string;
  subpath?: string;
  query?: string;
  /** Milliseconds. */
  timeout?: number;
}

export function registerFnTest(fn: Command, context: ContextFactory): void {
  const test = fn
    .command("test")
    .description("call a function through the gateway and print the response body")
    .requiredOption("--name <name>", "function name")
    .option("--body <body>", "request body; @file sends the file's bytes")
    .option("-H, --header <header>", "request header 'Name: value'; repeatable", collectHeaders)
    .option("-X, --method <method>", "HTTP method (default GET, or POST with --body)")
    .option("--subpath <path>", "path after /function/<name>, passed to the function")
    .option("--query <query>", "query string, e.g. 'a=1&b=2'; repeatable (joined by &)", joinQuery)
    .option(
      "-t, --timeout <duration>",
      "stop waiting after this long, e.g. 30s or 2m (default: until the gateway ends the request at the function's timeout)",
      parseDuration,
    )
    .addHelpText(
      "after",
      `
Examples:
  fizz fn test --name hello
  fizz fn test --name hello --body '{"who":"world"}'
  fizz fn test --name upload --body @photo.jpg -H 'Content-Type: image/jpeg'
  fizz fn test --name users --subpath /42 --query 'verbose=1'`,
    )
    .action(async (opts: TestOptions, cmd: Command) => {
      const ctx = context(cmd);
      const method = (opts.method ?? (opts.body === undefined ? "GET" : "POST")).toUpperCase();
      if (opts.body !== undefined && (method === "GET" || method === "HEAD")) {
        cmd.error(`error: --body cannot be sent with --method ${method}`, { exitCode: 2 });
      }
      const headers = new Headers();
      for (const [name, value] of opts.header ?? []) headers.append(name, value);
      let body: Buffer | undefined;
      if (opts.body !== undefined) {
        const read = await readBody(opts.body, ctx.bodyMaxBytes);
        body = read.bytes;
        if (!headers.has("content-type")) headers.set("content-type", guessContentType(read));
      }
      const init = { method, headers, ...(body ? { body } : {}) };
      // Fission's rule: zero (or less) means no limit.
      const timeoutMs = opts.timeout !== undefined && opts.timeout > 0 ? opts.timeout : undefined;
      await invoke(ctx, testUrl(ctx, opts), init, timeoutMs);
    });
  fissionFlags(test, {
    aliases: { "-b <body>": "--body", "-q <query>": { ours: "--query", repeatable: true } },
  });
}

/** The gateway's built-in route to every function, independent of any HTTP trigger. */
export function functionUrl(ctx: Context, name: string): string {
  const suffix = ctx.namespace === "default" ? "" : `.${encodeURIComponent(ctx.namespace)}`;
  return `${ctx.gatewayUrl}/function/${encodeURIComponent(name)}${suffix}`;
}

function testUrl(ctx: Context, opts: TestOptions): string {
  // Sent as given (not re-encoded): the user may be testing how the function decodes a path.
  const subpath = opts.subpath
    ? opts.subpath.startsWith("/")
      ? opts.subpath
      : `/${opts.subpath}`
    : "";
  const query = opts.query ? `?${opts.query.replace(/^\?/, "")}` : "";
  return `${functionUrl(ctx, opts.name)}${subpath}${query}`;
}

/**
 * What curl users expect: JSON is labelled as JSON, inline text as text, a file as opaque bytes.
 * An explicit --header 'Content-Type: ...' wins over all of these.
 */
function guessContentType(body: { bytes: Buffer; fromFile: boolean }): string {
  try {
    JSON.parse(body.bytes.toString("utf8"));
    return "application/json";
  } catch {
    return body.fromFile ? "application/octet-stream" : "text/plain; charset=utf-8";
  }
}

async function invoke(
  ctx: Context,
  url: string,
  init: RequestInit,
  timeoutMs: number | undefined,
): Promise<void> {
  // No client timeout by default: the gateway enforces the function's own timeoutSeconds (504).
  const gateway = { label: "gateway" as const, baseUrl: ctx.gatewayUrl };
  const res = await send(ctx.fetch, gateway, url, init, timeoutMs);
  if (!isSuccess(res.status)) {
    throw new CliError(`HTTP ${res.status}: ${errorFromResponse(res).message}`);
  }
  ctx.stdout.write(res.body);
}
