/**
 * Each spawner child's autogroup writes, kept beside the child rather than on it: SpawnedChild is
 * the ChildProcess look-alike the backend handles, and only StartPriority writes priorities.
 */
export const autogroupWriters = new WeakMap<
  object,
  { write: (nice: number) => boolean; written: () => Promise<void> }
>();

/**
 * For a child the spawner started: sets its session's autogroup niceness (-20..19) through the
 * spawner, which refuses once it has reaped the child (the poolkeeper reads the exit later, and
 * the pid may be another session's in between), as it does signals. False when the request could
 * not be sent; the write itself is the spawner's, done when autogroupWritten resolves (a failure
 * is on its stderr). Undefined for any other child.
 */
export function autogroupThroughSpawner(child: object): ((nice: number) => boolean) | undefined {
  return autogroupWriters.get(child)?.write;
}

/**
 * Resolves once the spawner has answered every autogroup write sent for `child` so far (made,
 * refused or failed), or has gone; at once for a child it did not start.
 */
export function autogroupWritten(child: object): Promise<void> {
  return autogroupWriters.get(child)?.written() ?? Promise.resolve();
}
