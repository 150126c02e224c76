import { FizzError } from "@fizz/events";
import {
  OutboundRefused,
  retryUntil,
  RetryStopped,
  type Logger,
  type OutboundGuard,
} from "@fizz/kit";

/**
 * Delivers an async call's result to its X-Callback-Url (OpenFaaS style): a POST with the
 * function's body and content type, plus `X-Call-Id`, `X-Function-Status`, `X-Duration-Seconds`
 * and `X-Function-Name`. Retried with back-off on network errors, 5xx, 408 and 429; a callback
 * that keeps failing is logged and given up on — it never makes the function run again.
 * Every attempt goes through the outbound guard (kit's outbound.ts): a URL that resolves to an
 * internal or platform address, now or on any redirect hop, is refused and never sent.
 */
export interface CallbackResult {
  callId: string;
  namespace: string;
  function: string;
  /** The function's status, or the error's (e.g. 504 for a timeout). */
  status: number;
  headers: Record<string, string>;
  body: Uint8Array;
  durationMs: number;
}

/** Delivered, or why not (recorded in the call status as `callbackError`). */
export type CallbackOutcome = { delivered: true } | { delivered: false; error: FizzError };

export class CallbackSender {
  constructor(
    private readonly opts: {
      guard: OutboundGuard;
      attempts: number;
      timeoutMs: number;
      logger: Logger;
      /** Between attempts: back-off from this base (ms). */
      baseDelayMs?: number;
      onResult?: (delivered: boolean) => void;
    },
  ) {}

  /** Delivered when the receiver accepted it (2xx/3xx); a 4xx other than 408/429 is final. */
  async send(url: string, r: CallbackResult, signal?: AbortSignal): Promise<CallbackOutcome> {
    const headers: Record<string, string> = {
      "content-type": r.headers["content-type"] ?? "application/octet-stream",
      "x-call-id": r.callId,
      "x-function-status": String(r.status),
      "x-duration-seconds": (r.durationMs / 1000).toFixed(3),
      "x-function-name": r.namespace === "default" ? r.function : `${r.function}.${r.namespace}`,
      "x-fizz-function-namespace": r.namespace,
    };
    let last = "";
    try {
      return await retryUntil<CallbackOutcome>(
        async () => {
          let status: number;
          try {
            const res = await this.opts.guard.request(url, {
              method: "POST",
              headers,
              body: r.body,
              timeoutMs: this.opts.timeoutMs,
              signal,
            });
            await res.body.dump();
            status = res.statusCode;
          } catch (err) {
            const why = refusedBy(err);
            if (why === undefined) throw err;
            this.opts.onResult?.(false);
            this.opts.logger.warn(
              { callId: r.callId, url: redact(url), reason: why },
              "callback refused by the outbound guard; not sent",
            );
            return {
              delivered: false,
              error: new FizzError("OUTBOUND_REFUSED", `x-callback-url: refused: ${why}`, {
                field: "x-callback-url",
              }),
            };
          }
          if (status >= 400) throw new ReceiverAnswered(status);
          this.opts.onResult?.(true);
          return { delivered: true };
        },
        {
          attempts: this.opts.attempts,
          baseMs: this.opts.baseDelayMs ?? 500,
          maxMs: 10_000,
          ...(signal ? { signal } : {}),
          // 408 and 429 are "later", any other 4xx is final.
          retryable: (err) =>
            !(
              err instanceof ReceiverAnswered &&
              err.status < 500 &&
              err.status !== 408 &&
              err.status !== 429
            ),
        },
      );
    } catch (err) {
      const cause = err instanceof RetryStopped ? err.cause : err;
      if (cause instanceof Error) last = cause.message;
      else if (typeof cause === "string") last = cause;
    }
    const error = new FizzError(
      "UNAVAILABLE",
      `callback not delivered after ${this.opts.attempts} attempts: ${last}`,
      { field: "x-callback-url" },
    );
    if (signal?.aborted) return { delivered: false, error }; // the gateway stops: handed back
    this.opts.onResult?.(false);
    this.opts.logger.warn(
      { callId: r.callId, url: redact(url), err: last, attempts: this.opts.attempts },
      "callback not delivered; giving up (the call itself completed)",
    );
    return { delivered: false, error };
  }
}

/** The receiver answered with an error status (`HTTP <status>` in the final error). */
class ReceiverAnswered extends Error {
  override readonly name = "ReceiverAnswered";
  constructor(readonly status: number) {
    super(`HTTP ${status}`);
  }
}

/** The guard's reason when `err` (or what undici wrapped it in) is a refusal. */
function refusedBy(err: unknown): string | undefined {
  for (let e = err, depth = 0; e instanceof Error && depth < 4; e = e.cause, depth++)
    if (e instanceof OutboundRefused) return e.message;
  return undefined;
}

/** Logs the callback's origin and path, not its query (it may carry a token). */
function redact(url: string): string {
  try {
    const u = new URL(url);
    return `${u.origin}${u.pathname}`;
  } catch {
    return "(invalid url)";
  }
}
