import { execFile } from "node:child_process";
import path from "node:path";
import type { Logger } from "@fizz/kit";
import { prepareInstancesDir, traversable } from "./isolation";
import { resolveOnPath, type Interpreters } from "./runtime-commands";

/**
 * What the process backend does once before its first spawn: the instances directory, traversable
 * by instance uids but not listable; and, when instances run as other uids (who cannot write next
 * to the loader), the Python loader's bytecode compiled in advance, or every cold start would
 * compile it again.
 */
export async function prepareHost(opts: {
  workDir: string;
  runtimesDir: string;
  interpreters: Interpreters;
  /** Instances run as other uids than the poolkeeper's. */
  otherUids: boolean;
  log: Logger;
}): Promise<void> {
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
  await Promise.all([
    prepareInstancesDir(opts.workDir).then(warn),
    ...needed,
    opts.otherUids
      ? compilePython(opts.interpreters.python, opts.runtimesDir, opts.log)
      : undefined,
  ]);
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
