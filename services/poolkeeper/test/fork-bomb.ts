import { existsSync, readFileSync } from "node:fs";
import { FizzError } from "@fizz/events";
import { createLogger, type Logger } from "@fizz/kit";
import { expect } from "chai";
import { isRoot, PYTHON, SETPRIV } from "./process-helpers";

export { isRoot, PYTHON, SETPRIV };

// Shared by the process-limit tests (build-nproc, instance-nproc): the tools, a bounded fork
// bomb in Python, and the checks on what /proc/<pid>/limits and loadConfig say.

export const PRLIMIT = "/usr/bin/prlimit";
/** Small, so the attack stays cheap; the defaults (256, 4096 for builds) are the same mechanism. */
export const LIMIT = 32;

/** What a real fork bomb as a pool uid needs: root (to switch uids), setpriv, prlimit, python3. */
export function canForkBomb(): boolean {
  return isRoot && [SETPRIV, PRLIMIT, PYTHON].every((f) => existsSync(f));
}

/**
 * Python defining bomb(n, hold, close=False): forks n children that sleep `hold` seconds (a fork
 * bomb without the exponent, so the test stays bounded; `close`: a child first closes descriptors
 * 3-255, not to hold a server's socket) and returns how many forks succeeded and the errno name of
 * the first that failed (None). A script appends its own use of it.
 */
export const FORK_BOMB_PY = String.raw`
import errno, os, time
def bomb(n, hold, close=False):
    forked, err = 0, None
    for _ in range(n):
        try:
            pid = os.fork()
        except OSError as e:
            err = errno.errorcode.get(e.errno, str(e.errno))
            break
        if pid == 0:
            if close:
                os.closerange(3, 256)
            time.sleep(hold)
            os._exit(0)
        forked += 1
    return forked, err
`;

/** The line of /proc/<pid>/limits for an RLIMIT_NPROC of `limit`, soft and hard. */
export function nprocLimitLine(limit: number): RegExp {
  return new RegExp(`^Max processes\\s+${limit}\\s+${limit}\\s`, "m");
}

/** This process's own hard RLIMIT_NPROC; undefined when unlimited. */
export function ownHardNproc(): number | undefined {
  const hard = /^Max processes\s+\S+\s+(\d+)/m.exec(readFileSync("/proc/self/limits", "utf8"));
  return hard ? Number(hard[1]) : undefined;
}

/** Expects `load` (a loadConfig) to refuse with a FizzError naming `field`. */
export function expectRefused(load: () => unknown, field: string): void {
  let err: unknown;
  try {
    load();
  } catch (e) {
    err = e;
  }
  expect(err).to.be.instanceOf(FizzError);
  expect((err as Error).message).to.include(field);
}

/** A poolkeeper logger at info whose lines the test reads. */
export function capturingLogger(): { logger: Logger; lines: string[] } {
  const lines: string[] = [];
  const logger = createLogger("poolkeeper", "info", { write: (l: string) => void lines.push(l) });
  return { logger, lines };
}
