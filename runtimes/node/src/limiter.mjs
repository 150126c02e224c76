// @ts-check
/**
 * The instance's own hard concurrency limit. At most `limit` calls run at once and at most
 * `queueMax` wait (FIFO); past that the caller answers 429. Gateways account for leases too, but
 * this limit is the one that holds when their accounting is wrong.
 */

/**
 * A place in the limiter. `ready` resolves once the call may run; `release` must be called exactly
 * when the call's response is over (finished or aborted) and is safe to call more than once or
 * while still queued (it then leaves the queue).
 * @typedef {{ ready: Promise<void>, release: () => void }} Ticket
 */

export class Limiter {
  /** @type {number} */ #limit;
  /** @type {number} */ #queueMax;
  #active = 0;
  /** @type {Array<() => void>} */ #waiting = [];

  /**
   * @param {number} limit
   * @param {number} queueMax
   */
  constructor(limit, queueMax) {
    this.#limit = limit;
    this.#queueMax = queueMax;
  }

  get active() {
    return this.#active;
  }

  get queued() {
    return this.#waiting.length;
  }

  /** @returns {Ticket | null} null when both the slots and the queue are full */
  acquire() {
    if (this.#active < this.#limit) {
      this.#active++;
      return this.#ticket(true, Promise.resolve(), () => {});
    }
    if (this.#waiting.length >= this.#queueMax) return null;
    /** @type {() => void} */
    let grant = () => {};
    const ready = new Promise((resolve) => (grant = /** @type {() => void} */ (resolve)));
    // `granted` is flipped by the limiter itself, at hand-over time, so a release racing with the
    // hand-over can never both leave the queue and keep the slot.
    const state = { granted: false };
    const wake = () => {
      state.granted = true;
      grant();
    };
    this.#waiting.push(wake);
    return this.#ticket(state, ready, wake);
  }

  /**
   * @param {true | { granted: boolean }} granted
   * @param {Promise<void>} ready
   * @param {() => void} wake
   * @returns {Ticket}
   */
  #ticket(granted, ready, wake) {
    let released = false;
    return {
      ready,
      release: () => {
        if (released) return;
        released = true;
        if (granted === true || granted.granted) {
          this.#handOver();
        } else {
          const i = this.#waiting.indexOf(wake);
          if (i >= 0) this.#waiting.splice(i, 1);
        }
      },
    };
  }

  /** A finished call passes its slot straight to the oldest waiter, so `active` stays exact. */
  #handOver() {
    const next = this.#waiting.shift();
    if (next) next();
    else this.#active--;
  }
}
