import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import path from "node:path";
import type { Logger } from "@fizz/kit";
import { prepareInstancesDir, traversable } from "./isolation";
import { resolveOnPath, type Interpreters } from "./runtime-commands";

/** What prepareHost found out about the host, for the launches that follow. */
export interface PreparedHost {
  /** The Node runtime as one built file (runtimes/node/prepare.mjs); undefined: its sources. */
  nodeBundle: string | undefined;
}

/**
 * What the process backend does once before its first spawn: the instances directory, traversable
 * by instance uids but not listable; the Node runtime built into one file (an empty-pool start
 * then reads one file instead of ~17 modules, ~20-30 ms less); and, when instances run as other
 * uids (who cannot write next to the loader), the Python loader's bytecode compiled in advance, or
 * every cold start would compile it again.
 */
export async function prepareHost(opts: {
  workDir: string;
  runtimesDir: string;
  interpreters: Interpreters;
  /** Instances run as other uids than the poolkeeper's. */
  otherUids: boolean;
  log: Logger;
}): Promise<PreparedHost> {
  const warn = (changed: string[]) => {
    if (changed.length > 0)
      opts.log.warn(
        { dirs: changed },
        "gave other users traverse (not read) permission on these directories, so instance uids can reach their work directories and the runtimes",
      );
  };
  // What instance uids must reach: the loaders and the interpreters running them.
  const interpreters: string[] = Object.values(opts.interpreters).map(
    (bin: string) => resolveOnPath(bin) ?? bin,
  );
  const needed = opts.otherUids
    ? [
        opts.runtimesDir,
        path.dirname(process.execPath),
        ...interpreters.map((p) => path.dirname(p)),
      ]
        .filter((p) => path.isAbsolute(p))
        // A path that is not there fails the spawn itself, with a clearer message.
        .map((p) => traversable(p).then(warn, () => undefined))
    : [];
  const [nodeBundle] = await Promise.all([
    buildNodeRuntime(opts.runtimesDir, opts.log),
    prepareInstancesDir(opts.workDir).then(warn),
    ...needed,
    opts.otherUids
      ? compilePython(opts.interpreters.python, opts.runtimesDir, opts.log)
      : undefined,
  ]);
  return { nodeBundle };
}

/** The build's own budget: esbuild takes well under a second; a hang must not block spawns. */
const NODE_BUILD_TIMEOUT_MS = 60_000;

/**
 * Runs runtimes/node/prepare.mjs (a no-op when its stamp matches the sources) in a child of its
 * own: the poolkeeper loads neither esbuild nor the runtime's code. Any failure (no esbuild in a
 * slim install, a read-only runtimes directory) only costs the start-up time: the sources run.
 */
function buildNodeRuntime(runtimesDir: string, log: Logger): Promise<string | undefined> {
  const script = path.join(runtimesDir, "node", "prepare.mjs");
  // A runtimes copy without the script (an older one): its sources, without a failed child.
  if (!existsSync(script)) return Promise.resolve(undefined);
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [script],
      { timeout: NODE_BUILD_TIMEOUT_MS, maxBuffer: 1024 * 1024 },
      (err, stdout) => {
        const result = parseResult(stdout);
        if (result?.ok === true && typeof result.file === "string") return resolve(result.file);
        log.warn(
          { err: result?.reason ?? err?.message ?? "no result" },
          "could not build the node runtime into one file; instances start from its sources (slower cold starts)",
        );
        resolve(undefined);
      },
    );
  });
}

function parseResult(
  stdout: string,
): { ok?: unknown; file?: unknown; reason?: string } | undefined {
  const last = stdout.trim().split("\n").at(-1);
  try {
    return last
      ? (JSON.parse(last) as { ok?: unknown; file?: unknown; reason?: string })
      : undefined;
  } catch {
    return undefined;
  }
}

function compilePython(python: string, runtimesDir: string, log: Logger): Promise<void> {
  const dir = path.join(runtimesDir, "python");
  return new Promise((resolve) => {
    execFile(python, ["-m", "compileall", "-q", dir], { timeout: 20_000 }, (err) => {
      if (err)
        log.warn(
          { err: err.message },
          "could not precompile the python loader; cold starts compile it",
        );
      resolve();
    });
  });
}
