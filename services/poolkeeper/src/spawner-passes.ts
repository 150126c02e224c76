// The uid clean-up's kill passes the spawner forks (op "killpass", runtimes/spawner/fizzspawn/
// killpass.py): the requests not answered yet, their bound and their deadline. Spawner.killPass
// (spawner-client.ts) sends them; its line reader hands over the "passed" answers.

/**
 * A kill pass not answered by then counts as not run (undefined), and the clean-up runs one in an
 * interpreter of its own. A pass waits at most 2 s for its lock.
 */
export const PASS_BOUND_MS = 5_000;
/**
 * A forked pass signals nothing once this much has passed since it was asked for (its deadline,
 * `by`, killpass.py), a margin before PASS_BOUND_MS: the clean-up gives its uid back once it
 * stops waiting, and a pass the spawner got to late (its loop stalled, or the pass waited on the
 * lock) would SIGKILL what the uid's next instance, another tenant's, runs by then.
 */
const PASS_DEADLINE_MS = PASS_BOUND_MS - 1_000;
/**
 * Exit codes of a pass that signalled nothing and has exited (killpass.py): 5 its deadline was
 * past; 1 it failed before its signals (its set-up in the fork, say). Answered as not run, so the
 * clean-up's own interpreter pass follows, not only setpriv's weaker one (which the uid can kill).
 */
const NOT_RUN = new Set([1, 5]);

export class KillPasses {
  private readonly waiting = new Map<number, (code: number | undefined) => void>();

  /**
   * Sends pass `id` through `send` (false: not sent, answered undefined at once). Resolves with
   * its exit code; undefined when it did not signal (refused, died of a signal, found its deadline
   * past, failed before its signals) or was not answered within PASS_BOUND_MS. Sent, it resolves
   * undefined no sooner than that, even once the spawner is gone (a pass it forked may still be
   * waiting for the lock): by then the pass can no longer signal.
   */
  ask(
    id: number,
    pass: { ruid: number; uid: number; lock: string },
    send: (msg: object) => boolean,
  ): Promise<number | undefined> {
    // CLOCK_MONOTONIC (libuv's hrtime), as the pass's clock.
    const by = Number(process.hrtime.bigint() / 1_000_000n) + PASS_DEADLINE_MS;
    if (!send({ op: "killpass", id, ...pass, by })) return Promise.resolve(undefined);
    return new Promise((resolve) => {
      const answered = (code: number | undefined) => {
        clearTimeout(timer);
        this.waiting.delete(id);
        resolve(code !== undefined && NOT_RUN.has(code) ? undefined : code);
      };
      const timer = setTimeout(() => answered(undefined), PASS_BOUND_MS);
      timer.unref();
      this.waiting.set(id, answered);
    });
  }

  /**
   * The spawner's "passed" line for `id` (code null: it did not run to an exit). Nothing answers
   * them when the spawner is lost: one it forked may outlive it, waiting for the lock, and must be
   * past its deadline before its clean-up goes on (their bound answers them).
   */
  answered(id: number, code: unknown): void {
    this.waiting.get(id)?.(typeof code === "number" ? code : undefined);
  }
}
