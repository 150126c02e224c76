import { backoffMs, sleep, type Logger } from "@fizz/kit";
import { Agent, request } from "undici";

/**
 * Delivers an async call's result to its X-Callback-Url (OpenFaaS style): a POST with the
 * function's body and content type, plus `X-Call-Id`, `X-Function-Status`, `X-Duration-Seconds`
 * and `X-Function-Name`. Retried with back-off on network errors, 5xx, 408 and 429; a callback
 * that keeps failing is logged and given up on — it never makes the function run again.
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

export class CallbackSender {
  private readonly agent = new Agent({ connections: 16, connectTimeout: 5000 });

  constructor(
    private readonly opts: {
      attempts: number;
      timeoutMs: number;
      logger: Logger;
      /** Between attempts: back-off from this base (ms). */
      baseDelayMs?: number;
      onResult?: (delivered: boolean) => void;
    },
  ) {}

  /** True when the receiver accepted it (2xx/3xx, or a 4xx it will not change its mind about). */
  async send(url: string, r: CallbackResult, signal?: AbortSignal): Promise<boolean> {
    const headers: Record<string, string> = {
      "content-type": r.headers["content-type"] ?? "application/octet-stream",
      "x-call-id": r.callId,
      "x-function-status": String(r.status),
      "x-duration-seconds": (r.durationMs / 1000).toFixed(3),
      "x-function-name": r.namespace === "default" ? r.function : `${r.function}.${r.namespace}`,
      "x-fizz-function-namespace": r.namespace,
    };
    let last = "";
    for (let attempt = 0; attempt < this.opts.attempts; attempt++) {
      if (attempt > 0)
        await sleep(backoffMs(attempt - 1, this.opts.baseDelayMs ?? 500, 10_000), signal);
      if (signal?.aborted) break;
      try {
        const res = await request(url, {
          method: "POST",
          headers,
          body: r.body,
          dispatcher: this.agent,
          headersTimeout: this.opts.timeoutMs,
          bodyTimeout: this.opts.timeoutMs,
          signal,
        });
        await res.body.dump();
        const s = res.statusCode;
        if (s < 400) {
          this.opts.onResult?.(true);
          return true;
        }
        last = `HTTP ${s}`;
        if (s < 500 && s !== 408 && s !== 429) break;
      } catch (err) {
        last = (err as Error).message;
      }
    }
    if (signal?.aborted) return false; // the gateway stops: the invocation is handed back
    this.opts.onResult?.(false);
    this.opts.logger.warn(
      { callId: r.callId, url: redact(url), err: last, attempts: this.opts.attempts },
      "callback not delivered; giving up (the call itself completed)",
    );
    return false;
  }

  async close(): Promise<void> {
    await this.agent.close().catch(() => undefined);
  }
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
