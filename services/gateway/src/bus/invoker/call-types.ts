import { FizzError, type ErrorCode } from "@fizz/events";
import type { TraceContext } from "@fizz/kit";

/** What a bus-side call of a function asks and gets (invoke.ts sends it). */
export interface CallRequest {
  method: string;
  /** Path and query the function sees. */
  path: string;
  /** Flat [name, value, ...]: cleaned of hop-by-hop and client X-Fizz-* headers by the caller. */
  headers: string[];
  body: Uint8Array | null;
  /** Response bodies past this fail the call (PAYLOAD_TOO_LARGE). */
  maxResponseBytes: number;
  /** Aborts the wait for a slot and the upstream call (the gateway stops). */
  signal?: AbortSignal | undefined;
  /**
   * The delivery's trace context: parent of the lease request and, as `traceparent`, of the
   * function (through a client span per send while recording). `headers` carry none.
   */
  trace?: TraceContext | undefined;
}

export interface CallResult {
  status: number;
  /** Lower-case names; hop-by-hop headers dropped; repeated ones joined with ", ". */
  headers: Record<string, string>;
  body: Buffer;
  /** From sending the request to the end of the response body. */
  durationMs: number;
}

/**
 * A call that produced no answer from the function. `notRun`: the function certainly did not run
 * (no capacity, no scheduler, every instance refused), so trying again later costs nothing and is
 * not an attempt; otherwise it may have run (timeout, instance died mid-call, load failure).
 */
export class CallFailure extends FizzError {
  constructor(
    code: ErrorCode,
    message: string,
    readonly notRun: boolean,
    cause?: unknown,
  ) {
    super(code, message, { cause });
  }
}
