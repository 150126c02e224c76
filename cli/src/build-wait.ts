/**
 * Waiting for a package's build. The registry builds asynchronously; the CLI polls the package
 * until the state it asked for is reached. The registry rolls every function using the package
 * forward BEFORE it reports `succeeded`, so once this returns no request gets the old code.
 */
import { setTimeout as sleep } from "node:timers/promises";
import type { Context } from "./context.js";
import { CliError } from "./errors.js";
import { statusLineOf } from "./status-line.js";
import type { PackageObject, PackageStatus } from "./types.js";

/** Lines of the build log shown when a build fails (`fizz pkg info` shows all of it). */
export const LOG_TAIL_LINES = 30;
/** `--wait-timeout` default: longer than the builder's default limit (300 s) plus queueing. */
export const DEFAULT_WAIT_SECONDS = 600;

const FIRST_POLL_MS = 250;
const MAX_POLL_MS = 2000;

/** The build ran and failed (the log tail is already on stderr); not a timeout. */
export class BuildFailedError extends CliError {
  override name = "BuildFailedError";
}

/** Which outcome the command waits for. */
export type Awaited =
  /** The build of this source digest finished (succeeded or failed). */
  | { source: string }
  /** This deployment archive is live. */
  | { deployment: string }
  /** A rebuild asked for at `after` (the reply's status): a newer finish than that one. */
  | { rebuildOf: PackageStatus | undefined; source: string };

/** The polled package once `awaited` is reached; throws a CliError on failure or timeout. */
export async function waitForPackage(
  ctx: Context,
  name: string,
  awaited: Awaited,
  timeoutSeconds: number,
): Promise<PackageObject> {
  const started = performance.now();
  const progress = progressLine(ctx, name);
  let delay = FIRST_POLL_MS;
  try {
    for (;;) {
      const pkg = await ctx.registry.get<PackageObject>("packages", name);
      const outcome = outcomeOf(pkg.status, awaited);
      if (outcome === "succeeded") return pkg;
      if (outcome === "failed") {
        progress.clear();
        throw buildFailed(ctx, name, pkg.status);
      }
      const elapsed = (performance.now() - started) / 1000;
      progress.show(pkg.status?.buildState ?? "pending", elapsed);
      if (elapsed >= timeoutSeconds) {
        progress.clear();
        const err = new CliError(
          `package "${name}" is still ${pkg.status?.buildState ?? "pending"} after ${timeoutSeconds}s`,
        );
        err.hint = `The build goes on; follow it with: fizz pkg info --name ${name}${nsFlag(ctx)}`;
        throw err;
      }
      // The last poll lands on the deadline, so a build finishing just in time is seen.
      await sleep(Math.min(delay, (timeoutSeconds - elapsed) * 1000));
      delay = Math.min(delay * 2, MAX_POLL_MS);
    }
  } finally {
    progress.clear();
  }
}

function outcomeOf(
  status: PackageStatus | undefined,
  awaited: Awaited,
): "succeeded" | "failed" | undefined {
  if (!status) return undefined;
  const { buildState } = status;
  if (buildState !== "succeeded" && buildState !== "failed") return undefined;
  if ("deployment" in awaited) {
    if (buildState === "succeeded" && status.deployment?.digest === awaited.deployment) {
      return "succeeded";
    }
    // A deployment needs no build; "failed" without a source means rolling it forward failed.
    return buildState === "failed" && status.sourceDigest === undefined ? "failed" : undefined;
  }
  if (status.sourceDigest !== awaited.source) return undefined;
  if ("rebuildOf" in awaited) {
    const before = awaited.rebuildOf;
    const stale =
      before !== undefined &&
      (before.buildState === "succeeded" || before.buildState === "failed") &&
      before.finishedAt === status.finishedAt;
    if (stale) return undefined;
  }
  return buildState;
}

/** Prints the log's tail to stderr and returns the error that ends the command. */
function buildFailed(
  ctx: Context,
  name: string,
  status: PackageStatus | undefined,
): BuildFailedError {
  const tail = logTail(status?.buildLog ?? "", LOG_TAIL_LINES);
  if (tail) {
    // Other packages may still be building side by side: above their spinners.
    statusLineOf(ctx.stderr).print(
      ctx.stderr,
      `--- build log of package "${name}" (last lines) ---\n${tail}\n---\n`,
    );
  }
  const err = new BuildFailedError(
    `the build of package "${name}" failed: ${status?.message ?? "no reason given"}`,
  );
  err.hint = `The whole log: fizz pkg info --name ${name}${nsFlag(ctx)}`;
  return err;
}

export function logTail(log: string, lines: number): string {
  const all = log.replace(/\s+$/, "").split("\n");
  return all.slice(-lines).join("\n");
}

export function nsFlag(ctx: Context): string {
  return ctx.namespace === "default" ? "" : ` -n ${ctx.namespace}`;
}

/**
 * A spinner on a terminal only (in a pipe or a CI log it would be noise): this wait's entry of
 * the terminal's status line, which packages building side by side share and which lines printed
 * meanwhile (status-line.ts `print`) never share a row with.
 */
function progressLine(
  ctx: Context,
  name: string,
): { show(state: string, s: number): void; clear(): void } {
  const line = statusLineOf(ctx.stderr);
  const id = Symbol(name);
  const frames = "|/-\\";
  let frame = 0;
  return {
    show(state, seconds) {
      const spin = frames.charAt(frame++ % frames.length);
      line.set(id, `${spin} package "${name}": ${state} (${Math.floor(seconds)}s)`);
    },
    clear() {
      line.remove(id);
    },
  };
}
