/**
 * `run` over every job, at most `atOnce` running at a time; the answers in the jobs' order. The
 * first failure rejects, and no job starts after it.
 */
export async function inTurns<J, T>(
  jobs: readonly J[],
  atOnce: number,
  run: (job: J, index: number) => Promise<T>,
): Promise<T[]> {
  const out: T[] = new Array<T>(jobs.length);
  let next = 0;
  let failed = false;
  const worker = async () => {
    while (!failed && next < jobs.length) {
      const i = next++;
      try {
        out[i] = await run(jobs[i]!, i);
      } catch (err) {
        failed = true;
        throw err;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(atOnce, jobs.length) }, worker));
  return out;
}
