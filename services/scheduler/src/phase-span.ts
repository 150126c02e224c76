import { currentScope, tracer } from "@fizz/kit";

/**
 * A span around one step of a lease (resolve, claim, specialize, route write), only while traces
 * are exported: bench/cold-profile.ts reads them to show where a cold start spends its time. Off,
 * it is the bare call.
 */
export function phase<T>(name: string, fn: () => Promise<T>): Promise<T> {
  const t = tracer();
  if (!t.recording) return fn();
  const span = t.startSpan(name, "internal", currentScope()?.trace);
  return fn().then(
    (v) => {
      span.end();
      return v;
    },
    (err: unknown) => {
      span.fail((err as Error).message);
      span.end();
      throw err;
    },
  );
}
