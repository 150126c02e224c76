import type { BackendInstance } from "./backend";
import { SpawnedChild, type ChildLike } from "./spawner-child";

/** One instance process of the process backend, from spawn until its exit is reported. */
export interface Child {
  instance: BackendInstance;
  proc: ChildLike;
  dir: string;
  uid: number | undefined;
  /** spawn() resolved: from then on the exit is reported through onExit. */
  reported: boolean;
  killReason: string | undefined;
  exitCode: number | null;
  exitSignal: string | null;
  spawnError: string | undefined;
  stderrTail: string[];
  exited: Promise<void>;
  finalize: () => void;
}

/** Why a child is gone, with its last stderr line: for errors and exit reports. */
export function describeExit(child: Child): string {
  const how = child.spawnError
    ? `could not start: ${child.spawnError}`
    : child.exitSignal
      ? `killed by ${child.exitSignal}`
      : `exited with code ${child.exitCode ?? "?"}`;
  const last = child.stderrTail.at(-1);
  return last ? `${how}: ${last}` : how;
}

/**
 * The whole process group (what the function started too); the child alone if that fails; nothing
 * once the child is reaped. One the spawner started is signalled through it, which refuses once it reaped the child: it reaps at
 * once and we learn of the exit later, and in between the pid may be another session's (a group
 * left behind without its leader is killed by uid, in cleanUpAfter).
 */
export function signalGroup(proc: ChildLike, sig: NodeJS.Signals): void {
  const pid = proc.pid;
  if (pid === undefined) return;
  if (proc instanceof SpawnedChild) {
    proc.kill(sig);
    return;
  }
  // Reaped already (Node sets these in the callback that reaps): the number may be another
  // process's, and a group leader's there would take the signal. What the function left in its
  // group goes with the exit's clean-up (every process of its uid, or without one the group).
  if (proc.exitCode !== null || proc.signalCode !== null) return;
  try {
    process.kill(-pid, sig);
  } catch {
    try {
      proc.kill(sig);
    } catch {
      // Already gone.
    }
  }
}
