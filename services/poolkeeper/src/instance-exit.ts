import type { Logger } from "@fizz/kit";
import type { BackendInstance, ExitInfo, OutputStream } from "./backend";
import type { IsolationOptions, UidKill, UidPool } from "./isolation";
import { LineSplitter } from "./lines";
import { describeExit, type Child } from "./process-child";
import type { ProcessBackendOptions } from "./process-backend-options";
import { removeOrLock } from "./remove-or-lock";
import type { ChildLike } from "./spawner-child";
import { killUid } from "./uid-cleanup";

// An instance process of the process backend from its start to its end: its output as lines,
// its exit reported, and then its uid emptied and its directory removed.

const STDERR_TAIL_LINES = 5;
/** After 'exit', how long to wait for the pipes to close (a grandchild may hold them open). */
const CLOSE_WAIT_MS = 200;

/** What trackChild works with: the process backend's own (process-backend.ts). */
export interface ChildTracking {
  /** The live children by instance id; a child leaves it at its end. */
  children: Map<string, Child>;
  exitListeners: Array<(i: BackendInstance, info: ExitInfo) => void>;
  outputListeners: Array<(i: BackendInstance, s: OutputStream, line: string) => void>;
  outputGate: ProcessBackendOptions["outputGate"];
  /** Directory removals and uid releases under way (close() waits for them). */
  cleanups: Set<Promise<unknown>>;
  isolation: IsolationOptions;
  uids: UidPool | undefined;
  log: Logger;
  /** Before each later removal of a directory whose first failed (RETRY_DELAYS_MS: tests). */
  removalRetryMs?: readonly number[];
}

/**
 * Follows the started `proc` of `instance` (in `dir`, as `uid`): adds it to `t.children`, passes
 * its output on line by line, and once it is gone reports its exit (if spawn() returned it) and
 * cleans up after it.
 */
export function trackChild(
  t: ChildTracking,
  instance: BackendInstance,
  proc: ChildLike,
  dir: string,
  uid: number | undefined,
): Child {
  let resolveExited!: () => void;
  const exited = new Promise<void>((r) => (resolveExited = r));
  let done = false;
  const stderrTail: string[] = [];
  const emit = (stream: OutputStream) => (line: string) => {
    if (stream === "stderr") {
      stderrTail.push(line);
      if (stderrTail.length > STDERR_TAIL_LINES) stderrTail.shift();
    }
    for (const cb of t.outputListeners) cb(instance, stream, line);
  };
  const gates = [t.outputGate?.(instance, "stdout"), t.outputGate?.(instance, "stderr")];
  const out = new LineSplitter(emit("stdout"), gates[0] ? { gate: gates[0] } : {});
  const err = new LineSplitter(emit("stderr"), gates[1] ? { gate: gates[1] } : {});
  const child: Child = {
    instance,
    proc,
    dir,
    uid,
    reported: false,
    killReason: undefined,
    exitCode: null,
    exitSignal: null,
    spawnError: undefined,
    stderrTail,
    exited,
    finalize: () => {
      if (done) return;
      done = true;
      // Every line it wrote goes out before its exit is reported (a crash's last words).
      out.end();
      err.end();
      t.children.delete(instance.id);
      // Whatever the function left behind in its process group goes with it. Not with a uid of
      // its own: cleanUpAfter kills everything of that uid (what left the group too), and the
      // leader is reaped already, so an empty group's number could be another process's by now
      // (one that made itself a group leader) and -pid would reach it.
      if (proc.pid !== undefined && uid === undefined) {
        try {
          process.kill(-proc.pid, "SIGKILL");
        } catch {
          // ESRCH: the group is already empty.
        }
      }
      cleanUpAfter(t, instance, dir, uid);
      if (child.reported) {
        const info: ExitInfo = {
          code: child.exitCode,
          signal: child.exitSignal,
          expected: child.killReason !== undefined,
          reason: child.killReason ?? describeExit(child),
        };
        for (const cb of t.exitListeners) {
          try {
            cb(instance, info);
          } catch (err) {
            t.log.error({ err }, "exit listener failed");
          }
        }
      }
      for (const g of gates) g?.release();
      resolveExited();
    },
  };
  t.children.set(instance.id, child);

  // Bytes, not strings: a line over the budget is dropped without being decoded.
  proc.stdout?.on("data", (b: Buffer) => out.push(b)).on("end", () => out.end());
  proc.stderr?.on("data", (b: Buffer) => err.push(b)).on("end", () => err.end());
  // EPIPE when the runtime exits: expected, and must not crash the poolkeeper.
  proc.stdin?.on("error", () => undefined);

  proc.once("error", (e) => {
    child.spawnError = e.message;
    if (proc.pid === undefined) child.finalize();
  });
  proc.once("exit", (code, signal) => {
    child.exitCode = code;
    child.exitSignal = signal;
    setTimeout(child.finalize, CLOSE_WAIT_MS).unref();
  });
  proc.once("close", () => {
    out.end();
    err.end();
    child.finalize();
  });
  return child;
}

/**
 * The uid is free again only once nothing of it runs and its files are gone: the next instance
 * with it must not meet them. One that killUid could not empty is quarantined. Its directory is
 * removed, or, when a process of another uid still writing in it makes that fail, left root's and
 * 0700 for a later removal (removeOrLock): the uid goes back either way. Runs in the background
 * (in `t.cleanups`).
 */
function cleanUpAfter(
  t: ChildTracking,
  instance: BackendInstance,
  dir: string,
  uid: number | undefined,
): void {
  const cleanup = (
    uid !== undefined
      ? killUid(uid, t.isolation, t.isolation.killBound)
      : Promise.resolve<UidKill>({ killed: 0, left: 0 })
  )
    .then(async (kill) => {
      // Only now, with nothing of the uid left running: no process of it can enter the tree
      // between the lock and the giveBack, and none of its can be alive once it is given back.
      // Not fs.rm: it walks by path, and another uid the function let in (its directory made
      // 0777) can still run now and swap a directory for a link between rm's lstat and its
      // readdir, making root delete outside (reproduced: 20 of 20 files gone).
      const giveBack = () => {
        if (uid === undefined || !t.uids || t.uids.giveBack(uid, kill)) return;
        t.log.error(
          { instance: instance.id, uid, left: kill.left, unremoved: kill.unremoved },
          "what an instance uid left (processes, or files: unremoved) could not all be removed; the uid is quarantined",
        );
      };
      // Not given back now (the directory neither removed nor locked whole): once removed later.
      const out = await removeOrLock(dir, {
        log: t.log,
        what: "an instance",
        retryDelaysMs: t.removalRetryMs,
        late: giveBack,
      });
      if (out) giveBack();
      else t.log.warn({ instance: instance.id, dir, uid }, "its uid stays reserved meanwhile");
    })
    .catch((err: unknown) =>
      t.log.warn(
        { instance: instance.id, dir, err: String(err) },
        "an instance clean-up failed; its uid stays reserved",
      ),
    )
    .finally(() => t.cleanups.delete(cleanup));
  t.cleanups.add(cleanup);
}
