/**
 * A signal for one operation under a long-lived one (a service's stop signal), with an optional
 * timeout, and `release()` to unhook it once the operation is over.
 *
 * Not AbortSignal.any: on Node 20 every any() result stays as a WeakRef in each source's set of
 * dependants for as long as the source lives, so one any() per request on a service-long signal
 * grows the heap without end (the gateway's soak: ~30 WeakRefs a second, found in heap
 * snapshots). Here the link is a listener, taken off by release().
 */
export interface LinkedSignal {
  signal: AbortSignal;
  /** Aborts it with `reason` (a timer of the caller's own, with its own error), and releases. */
  abort(reason: unknown): void;
  /** Unhooks from the parents and stops the timer; call it when the operation ends, however. */
  release(): void;
}

export function linkedSignal(
  parents: ReadonlyArray<AbortSignal | undefined>,
  timeoutMs?: number,
): LinkedSignal {
  const ctl = new AbortController();
  const hooked: Array<[AbortSignal, () => void]> = [];
  let timer: NodeJS.Timeout | undefined;
  const release = (): void => {
    clearTimeout(timer);
    for (const [parent, onAbort] of hooked) parent.removeEventListener("abort", onAbort);
    hooked.length = 0;
  };
  const abort = (reason: unknown): void => {
    ctl.abort(reason);
    release();
  };
  for (const parent of parents) {
    if (parent === undefined) continue;
    if (parent.aborted) {
      abort(parent.reason);
      return { signal: ctl.signal, abort, release };
    }
    const onAbort = (): void => abort(parent.reason);
    parent.addEventListener("abort", onAbort, { once: true });
    hooked.push([parent, onAbort]);
  }
  if (timeoutMs !== undefined) {
    // The same reason AbortSignal.timeout gives, so callers that tell a timeout by its name
    // (TimeoutError) still do; unref'd as its timer is.
    timer = setTimeout(
      () => abort(new DOMException("The operation was aborted due to timeout", "TimeoutError")),
      timeoutMs,
    );
    timer.unref();
  }
  return { signal: ctl.signal, abort, release };
}
