/**
 * `fizz fn logs` (Fission's `fn log`): a function's stdout, stderr and the platform's notices
 * about it, from the registry (GET …/functions/{name}/logs, NDJSON). With --follow it keeps
 * printing until Ctrl-C, reconnecting when the registry connection drops.
 */
import { InvalidArgumentError, type Command } from "commander";
import type { Context, ContextFactory } from "../context.js";
import { ApiError, CliError } from "../errors.js";
import { parseInteger } from "../options.js";
import { fissionFlags } from "./fission-flags.js";
import { formatLine, parseLogLine, Resume, type LogLine } from "./fn-logs-format.js";

interface LogsOptions {
  name: string;
  follow?: boolean;
  since?: string;
  tail?: number;
  instance?: string;
  detail?: boolean;
}

/** The registry's bound (logs-http.ts MAX_TAIL). */
const MAX_TAIL = 10_000;
/** A reconnect resumes this long before the last line seen; duplicates are skipped. */
const RESUME_OVERLAP_MS = 5000;
/** The registry sends a keep-alive every 15 s; three missed means the connection is dead. */
const SILENCE_MS = 45_000;
const RETRY_MIN_MS = 250;
const RETRY_MAX_MS = 5000;

function parseTail(value: string): number {
  const n = parseInteger(value);
  if (n < 0 || n > MAX_TAIL) throw new InvalidArgumentError(`must be between 0 and ${MAX_TAIL}.`);
  return n;
}

function checkSince(value: string): string {
  const v = value.trim();
  const duration = /^(\d+(ms|s|m|h|d))+$/.test(v);
  if (!duration && Number.isNaN(Date.parse(v)))
    throw new InvalidArgumentError(
      "must be a duration such as 10m, 2h or 30s, or an RFC 3339 time.",
    );
  return v;
}

export function registerFnLogs(fn: Command, context: ContextFactory): void {
  const logs = fn
    .command("logs")
    .alias("log")
    .description("print a function's output (stdout, stderr) and the platform's notices about it")
    .requiredOption("--name <name>", "function name")
    .option("-f, --follow", "keep printing new lines until Ctrl-C")
    .option(
      "--since <time>",
      "only lines since a duration ago (10m, 2h, 30s) or an RFC 3339 time",
      checkSince,
    )
    .option(
      "--tail <n>",
      `only the last N lines (0-${MAX_TAIL}; default 200, or every line with --since)`,
      parseTail,
    )
    .option("--instance <id>", "only this instance's lines")
    .option("-d, --detail", "show each line's instance and whole request id")
    .addHelpText(
      "after",
      `
Lines read: <time> <stream> [req <id>] <text>; the platform's own lines (stream "system") are
marked ***. -o json prints the registry's NDJSON lines unchanged.

Examples:
  fizz fn logs --name hello
  fizz fn logs --name hello -f --tail 0          # only new lines, until Ctrl-C
  fizz fn logs --name hello --since 10m --instance hello-4f2a
  fizz fn logs --name hello -o json | jq -r 'select(.stream=="stderr") | .line'`,
    )
    .action(async (opts: LogsOptions, cmd: Command) => {
      const ctx = context(cmd);
      await printLogs(ctx, opts);
    });
  fissionFlags(logs, {
    aliases: { "--pod <pod>": "--instance", "--recordcount <n>": "--tail" },
  });
}

async function printLogs(ctx: Context, opts: LogsOptions): Promise<void> {
  const interrupt = opts.follow ? ctx.interrupt() : undefined;
  const resume = new Resume(RESUME_OVERLAP_MS);
  const startedAt = ctx.now();
  let retryMs = RETRY_MIN_MS;
  for (let first = true; ; first = false) {
    if (interrupt?.aborted) return;
    if (!first) resume.reconnecting();
    const query = new URLSearchParams();
    if (first) {
      if (opts.since !== undefined) query.set("since", opts.since);
      if (opts.tail !== undefined) query.set("tail", String(opts.tail));
    } else {
      // Resume where we were: from the last line seen (or from when we started).
      query.set("since", new Date(resume.since() ?? startedAt).toISOString());
    }
    if (opts.instance !== undefined) query.set("instance", opts.instance);
    if (opts.follow) query.set("follow", "true");
    let printed = false;
    try {
      await readOnce(ctx, opts, query, interrupt, (l, raw) => {
        if (!resume.admit(l)) return;
        printed = true;
        ctx.stdout.write(ctx.output === "json" ? `${raw}\n` : `${formatLine(l, !!opts.detail)}\n`);
      });
      if (!opts.follow || interrupt?.aborted) return;
      ctx.stderr.write("The registry ended the log stream; reconnecting.\n");
    } catch (err) {
      if (interrupt?.aborted) return;
      // A refusal (404: the function is gone, 401, 400) will not change by retrying.
      if (!opts.follow || (err instanceof ApiError && err.status < 500)) throw err;
      ctx.stderr.write(
        `Lost the log stream (${err instanceof Error ? err.message : String(err)}); reconnecting.\n`,
      );
    }
    if (printed) retryMs = RETRY_MIN_MS;
    await sleep(retryMs, interrupt);
    retryMs = Math.min(retryMs * 2, RETRY_MAX_MS);
  }
}

/** One request: prints what arrives until the answer ends, the connection drops or Ctrl-C. */
async function readOnce(
  ctx: Context,
  opts: LogsOptions,
  query: URLSearchParams,
  interrupt: AbortSignal | undefined,
  each: (line: LogLine, raw: string) => void,
): Promise<void> {
  const conn = new AbortController();
  const stop = () => conn.abort();
  interrupt?.addEventListener("abort", stop, { once: true });
  let silence: NodeJS.Timeout | undefined;
  const alive = () => {
    if (!opts.follow) return;
    clearTimeout(silence);
    silence = setTimeout(stop, SILENCE_MS);
  };
  try {
    alive();
    const body = await ctx.registry.openLogs(opts.name, query, conn.signal);
    const decoder = new TextDecoder();
    let rest = "";
    const reader = body.getReader();
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      alive();
      rest += decoder.decode(value, { stream: true });
      const parts = rest.split("\n");
      rest = parts.pop() ?? "";
      for (const raw of parts) {
        if (raw === "") continue; // keep-alive
        const line = parseLogLine(raw);
        if (!line) throw new CliError("the registry answered a log line that is not a LogLine");
        each(line, raw);
      }
    }
    if (conn.signal.aborted && !interrupt?.aborted)
      throw new CliError(`no data from the registry for ${SILENCE_MS / 1000}s`);
  } finally {
    clearTimeout(silence);
    interrupt?.removeEventListener("abort", stop);
  }
}

function sleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener("abort", done, { once: true });
  });
}
