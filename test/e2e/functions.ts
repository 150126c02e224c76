/**
 * Function sources the end-to-end suites deploy. Each answers with the id of the instance that ran
 * it (FIZZ_INSTANCE_ID is in the runtime's environment), so a test can tell instances apart.
 */

/**
 * `?ms=N` sleeps N ms first; `?hang=1` never answers; `?inflight` reports the calls running in
 * this instance right now (without counting itself). Answers
 * `{id, pid, method, bytes, inflight, answer}`.
 */
export function workerJs(answer = "v1"): string {
  return `
let inflight = 0;
module.exports = async (ctx) => {
  const q = ctx.query;
  if (q.inflight !== undefined) return { id: process.env.FIZZ_INSTANCE_ID, inflight, answer: ${JSON.stringify(answer)} };
  inflight++;
  try {
    if (q.hang !== undefined) await new Promise(() => {});
    const ms = Number(q.ms ?? 0);
    if (ms > 0) await new Promise((r) => setTimeout(r, ms));
    return {
      id: process.env.FIZZ_INSTANCE_ID,
      pid: process.pid,
      method: ctx.method,
      bytes: ctx.request.rawBody.length,
      inflight,
      answer: ${JSON.stringify(answer)},
    };
  } finally {
    inflight--;
  }
};
`;
}

export interface WorkerAnswer {
  id: string;
  pid: number;
  method: string;
  bytes: number;
  inflight: number;
  answer: string;
}
