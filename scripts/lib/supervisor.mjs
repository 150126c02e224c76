// Keeps the platform's processes running: a child that exits while the platform is up is started
// again (same command, ports and data dirs) after an exponential back-off, and the others keep
// running. The back-off resets once a child has stayed up for `resetAfterMs`, so a service that
// crashes once a day restarts at once, while one that crashes on start does not spin the CPU.
// Plain JavaScript: used by `npm start` before anything is compiled.

const DEFAULTS = { initialMs: 100, maxMs: 5000, resetAfterMs: 60_000 };

/** @typedef {import("node:child_process").ChildProcess} ChildProcess */
/**
 * @typedef {object} ExitEvent
 * @property {string} name
 * @property {number | null} code
 * @property {string | null} signal
 * @property {number} delayMs  the wait before the restart
 * @property {number} restarts
 */
/**
 * @typedef {object} SupervisorOptions
 * @property {number} [initialMs]     first restart delay
 * @property {number} [maxMs]         longest restart delay
 * @property {number} [resetAfterMs]  a run this long resets the back-off
 * @property {(e: ExitEvent) => void} [onExit]
 * @property {(e: {name: string, restarts: number}) => void} [onRestart]
 */

/**
 * @typedef {object} Entry
 * @property {string} name
 * @property {ChildProcess} child  the current process
 * @property {number} restarts  how many times it was started again
 * @property {number} startedAt
 * @property {number} failures  consecutive short-lived runs (drives the back-off)
 * @property {() => Promise<boolean>} ready
 * @property {() => ChildProcess} spawn
 * @property {NodeJS.Timeout | undefined} timer
 */

export class Supervisor {
  /** @param {SupervisorOptions} [opts] */
  constructor(opts = {}) {
    // Options given as undefined keep the default (callers spread partial settings in).
    this.opts = {
      ...opts,
      initialMs: opts.initialMs ?? DEFAULTS.initialMs,
      maxMs: opts.maxMs ?? DEFAULTS.maxMs,
      resetAfterMs: opts.resetAfterMs ?? DEFAULTS.resetAfterMs,
    };
    /** @type {Map<string, Entry>} */
    this.entries = new Map();
    // Until `arm()`, an exit is a start-up failure the launcher reports, not something to retry:
    // a misconfigured service would otherwise restart forever behind a "starting..." prompt.
    this.armed = false;
    this.stopping = false;
    /** @type {Set<() => void>} */
    this.waiters = new Set();
  }

  /**
   * Starts `spawn()` and keeps it running. `ready` says when a (re)started child serves.
   * @param {string} name
   * @param {() => ChildProcess} spawn
   * @param {() => Promise<boolean>} [ready]
   * @returns {ChildProcess}
   */
  add(name, spawn, ready = () => Promise.resolve(true)) {
    /** @type {Entry} */
    const entry = {
      name,
      spawn,
      ready,
      child: spawn(),
      restarts: 0,
      startedAt: Date.now(),
      failures: 0,
      timer: undefined,
    };
    this.entries.set(name, entry);
    this.watch(entry);
    return entry.child;
  }

  arm() {
    this.armed = true;
  }

  /**
   * [{ name, child }] with each name's current process.
   * @returns {{ name: string, child: ChildProcess }[]}
   */
  get children() {
    return [...this.entries.values()].map((e) => ({ name: e.name, child: e.child }));
  }

  /**
   * How many times `name` was restarted.
   * @param {string} name
   */
  restarts(name) {
    return this.get(name).restarts;
  }

  /**
   * Kills the current process of `name` (SIGKILL unless told), as a crash would.
   * @param {string} name
   * @param {NodeJS.Signals} [signal]
   * @returns {number} its restart count before the kill
   */
  kill(name, signal = "SIGKILL") {
    const e = this.get(name);
    const before = e.restarts;
    e.child.kill(signal);
    return before;
  }

  /**
   * Resolves once `name` has been restarted more than `after` times (default: its count now) and
   * the new process is ready.
   * @param {string} name
   * @param {number} [after]
   * @param {number} [timeoutMs]
   * @returns {Promise<void>}
   */
  async restarted(name, after = this.get(name).restarts, timeoutMs = 60_000) {
    const e = this.get(name);
    const deadline = Date.now() + timeoutMs;
    while (e.restarts <= after || !(await e.ready().catch(() => false))) {
      if (this.stopping) throw new Error(`${name}: the platform is stopping`);
      if (Date.now() > deadline)
        throw new Error(`${name} was not restarted and ready within ${timeoutMs} ms`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  /**
   * Stops restarting, then stops the children: `first` names go first (services drain before the
   * servers they talk to), SIGTERM then SIGKILL after `graceMs`.
   * @param {string[][]} groups
   * @param {number} [graceMs]
   * @returns {Promise<void>}
   */
  async stop(groups, graceMs = 10_000) {
    this.stopping = true;
    for (const e of this.entries.values()) clearTimeout(e.timer);
    for (const group of groups) {
      await Promise.all(
        group
          .map((n) => this.entries.get(n))
          .filter((e) => e !== undefined)
          .map(({ child }) => terminate(child, graceMs)),
      );
    }
  }

  /**
   * @param {string} name
   * @returns {Entry}
   */
  get(name) {
    const e = this.entries.get(name);
    if (!e) throw new Error(`no supervised process named ${name}`);
    return e;
  }

  /** @param {Entry} entry */
  watch(entry) {
    const child = entry.child;
    child.once("exit", (code, signal) => {
      if (this.stopping || !this.armed || entry.child !== child) return;
      const ranMs = Date.now() - entry.startedAt;
      if (ranMs >= this.opts.resetAfterMs) entry.failures = 0;
      const delayMs = Math.min(this.opts.maxMs, this.opts.initialMs * 2 ** entry.failures);
      entry.failures++;
      this.opts.onExit?.({ name: entry.name, code, signal, delayMs, restarts: entry.restarts });
      entry.timer = setTimeout(() => this.respawn(entry), delayMs);
    });
  }

  /** @param {Entry} entry */
  respawn(entry) {
    if (this.stopping) return;
    try {
      entry.child = entry.spawn();
    } catch (err) {
      // spawn() throws only on bad arguments; retrying later is all there is to do.
      entry.timer = setTimeout(() => this.respawn(entry), this.opts.maxMs);
      this.opts.onExit?.({
        name: entry.name,
        code: null,
        signal: String(err),
        delayMs: this.opts.maxMs,
        restarts: entry.restarts,
      });
      return;
    }
    entry.startedAt = Date.now();
    entry.restarts++;
    this.watch(entry);
    this.opts.onRestart?.({ name: entry.name, restarts: entry.restarts });
  }
}

/**
 * @param {ChildProcess} child
 * @param {number} graceMs
 * @returns {Promise<void>}
 */
function terminate(child, graceMs) {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve();
    child.once("exit", () => resolve());
    child.kill("SIGTERM");
    setTimeout(() => child.kill("SIGKILL"), graceMs).unref();
  });
}
