import type { EnvironmentRef } from "@fizz/events";
import type { BackendInstance } from "./backend";
import type { PodCondition } from "./kube-pods";

/** The kubernetes backend's record of one pod it created, claimed or adopted. */
export class PodRecord {
  /** Set once spawn() resolved (or at adoption): from then on its end goes through onExit. */
  instance: BackendInstance | undefined;
  /** Set by kill(): its end is then expected, not a death. */
  killReason: string | undefined;
  ended = false;
  /** Its pod ended by itself and its exit waits for the log follow to read the last lines. */
  draining = false;
  /** Resolves when it has ended. */
  readonly gone: Promise<void>;
  private markGone!: () => void;
  /** spawn() waiting for this pod: told of every change. */
  private watcher: ((c: PodCondition) => void) | undefined;

  constructor(
    readonly id: string,
    readonly environment: EnvironmentRef,
  ) {
    this.gone = new Promise<void>((r) => (this.markGone = r));
  }

  observe(c: PodCondition): void {
    this.watcher?.(c);
  }

  /** Marks it ended (once: false when it already was) and fails a waiting untilReady(). */
  finish(reason: string): boolean {
    if (this.ended) return false;
    this.ended = true;
    this.watcher?.({ kind: "ended", reason, code: null });
    this.markGone();
    return true;
  }

  /** Fails a waiting untilReady() without ending the pod (the backend is stopping). */
  abandon(reason: string): void {
    this.watcher?.({ kind: "ended", reason, code: null });
  }

  /**
   * Resolves with the pod's address once it is Running and Ready; rejects when it ends, cannot
   * start (a bad image), or is not ready within `ms`, naming what it last waited for.
   */
  untilReady(current: PodCondition | undefined, ms: number): Promise<string> {
    return new Promise((resolve, reject) => {
      let why: string | undefined;
      const settle = (failure: string | undefined, address?: string) => {
        clearTimeout(timer);
        this.watcher = undefined;
        if (failure !== undefined || address === undefined) reject(new Error(failure));
        else resolve(address);
      };
      const timer = setTimeout(
        () => settle(`not ready within ${ms} ms${why ? ` (${why})` : ""}`),
        ms,
      );
      this.watcher = (c) => {
        if (c.kind === "ready") settle(undefined, c.address);
        else if (c.kind === "ended") settle(c.reason);
        else if (c.kind === "pending" && c.fatal) settle(c.fatal);
        else if (c.kind === "pending" && c.why) why = c.why;
      };
      if (this.ended) settle("it ended");
      else if (current) this.watcher(current);
    });
  }
}
