import { FizzError, errorBody, httpStatusOf, type ErrorCode } from "@fizz/events";
import { backoffMs, realClock, retryUntil } from "@fizz/kit";
import type { FunctionLeases, LeaseManager } from "../../front-door/index";
import { CallFailure, callFunction, type CallRequest, type CallResult } from "./invoke";

/**
 * What a bus-originated call came to, in the terms every bus path decides on:
 * - `answered`: the function answered below 500. A 4xx is the function's answer too: the call is
 *   complete and is not retried (running it again would answer the same);
 * - `failed`: a 5xx from the function, or no answer (timeout, instance died, load failure, unknown
 *   function). `retry` says whether another attempt may help (an unknown function or a response
 *   over the size limit will not).
 * Calls that certainly did not run because of capacity or a missing scheduler never end up here:
 * `callUntilRun` waits for them (see there).
 */
export interface Answer {
  status: number;
  /** Lower-case header names. */
  headers: Record<string, string>;
  body: Uint8Array;
  durationMs: number;
}

export type Outcome =
  | { kind: "answered"; answer: Answer }
  | { kind: "failed"; answer: Answer; error: FizzError; retry: boolean };

/** Failures no retry can fix. */
const FINAL_CODES: ReadonlySet<ErrorCode> = new Set<ErrorCode>([
  "NOT_FOUND",
  "NO_ROUTE",
  "PAYLOAD_TOO_LARGE",
  "VALIDATION_FAILED",
  "MALFORMED_MESSAGE",
]);
/** Not run, and bound to pass: no capacity (at maxInstances), no scheduler, a lease request timed out. */
const WAIT_CODES: ReadonlySet<ErrorCode> = new Set<ErrorCode>([
  "NO_CAPACITY",
  "TOO_MANY_REQUESTS",
  "UNAVAILABLE",
  "TIMEOUT",
  "INSTANCE_BUSY",
]);

export function outcomeOf(r: CallResult): Outcome {
  const answer: Answer = {
    status: r.status,
    headers: r.headers,
    body: r.body,
    durationMs: r.durationMs,
  };
  if (r.status < 500) return { kind: "answered", answer };
  const error = new FizzError("FUNCTION_ERROR", `the function answered ${r.status}`);
  return { kind: "failed", answer, error, retry: true };
}

export function failureOf(err: unknown, durationMs = 0): Outcome {
  const error = FizzError.from(err);
  return {
    kind: "failed",
    answer: errorAnswer(error, durationMs),
    error,
    retry: !FINAL_CODES.has(error.code),
  };
}

/** An error as a result message: the shared JSON error body with the code's HTTP status. */
export function errorAnswer(err: FizzError, durationMs = 0): Answer {
  return {
    status: httpStatusOf(err.code),
    headers: { "content-type": "application/json", "fizz-error-code": err.code },
    body: Buffer.from(JSON.stringify(errorBody(err))),
    durationMs,
  };
}

/** Whether a call failure is "did not run, try again later" (not an attempt). */
export function mustWait(err: unknown): boolean {
  return err instanceof CallFailure && err.notRun && WAIT_CODES.has(err.code);
}

/**
 * Calls the function; while it cannot run for lack of capacity or a scheduler, waits (back-off up
 * to 5 s) and tries again, holding the message (its in-progress acks keep it ours) instead of
 * turning an overload into failed attempts and dead letters. `signal` ends the wait (the gateway
 * stops): the CallFailure is thrown and the caller hands the message back.
 */
export async function callUntilRun(
  leases: LeaseManager,
  fl: FunctionLeases,
  req: CallRequest,
  signal: AbortSignal | undefined,
  onWait?: (err: CallFailure) => void,
): Promise<Outcome> {
  const startedAt = performance.now();
  try {
    const result = await retryUntil(() => callFunction(leases, fl, req), {
      baseMs: 250,
      maxMs: 5000,
      // Not `signal`: a call already under way when the gateway stops still gets its answer; the
      // stop only ends the waiting (the pause is cut short and the next failure is thrown).
      retryable: (err) => !signal?.aborted && mustWait(err),
      onRetry: ({ err }) => onWait?.(err as CallFailure),
      clock: { now: () => Date.now(), sleep: (ms) => realClock.sleep(ms, signal) },
    });
    return outcomeOf(result);
  } catch (err) {
    if (signal?.aborted) throw err;
    return failureOf(err, performance.now() - startedAt);
  }
}

/** Delay before attempt `attempts + 1`: exponential with jitter, from `baseMs`, capped. */
export function retryDelayMs(attempts: number, baseMs: number, maxMs: number): number {
  return backoffMs(Math.max(0, attempts - 1), baseMs, maxMs);
}
