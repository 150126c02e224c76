import { FizzError } from "@fizz/events";

/**
 * How the proxy reads an instance's failures: the runtime's own error code in a held 503/429
 * answer (which decides a retry), whose fault an upstream error is (which decides dropping the
 * lease), and the upstream errors that get their own answer rather than a retry. Apart from the
 * proxy's handler so the mapping reads in one place, without the streaming around it.
 */

/** The `error.code` of a JSON error body (the runtime's answers), or undefined. */
export function errorCodeOf(body: Buffer): string | undefined {
  try {
    const v = JSON.parse(body.toString("utf8")) as { error?: { code?: unknown } } | null;
    return typeof v?.error?.code === "string" ? v.error.code : undefined;
  } catch {
    return undefined;
  }
}

/**
 * The instance's fault (dead, hung, cut the response), so its lease is dropped. A body timeout
 * mid-stream is a quiet stream (SSE), not a dead instance.
 */
export function isInstanceFault(headersSent: boolean, code: string | undefined): boolean {
  return headersSent ? code !== "UND_ERR_BODY_TIMEOUT" : code !== "UND_ERR_INVALID_ARG";
}

/**
 * The answer for an upstream error before the response head that is not retried: a timeout (a
 * hung instance) or a request undici cannot forward. Undefined for the rest, which the proxy
 * retries or answers INSTANCE_FAILED.
 */
export function upstreamAnswer(
  code: string | undefined,
  message: string,
  fnName: string,
  timeoutMs: number,
): FizzError | undefined {
  if (code === "UND_ERR_HEADERS_TIMEOUT" || code === "UND_ERR_BODY_TIMEOUT") {
    return new FizzError("TIMEOUT", `function ${fnName} did not answer within ${timeoutMs} ms`);
  }
  if (code === "UND_ERR_INVALID_ARG") {
    return new FizzError("VALIDATION_FAILED", `request cannot be forwarded: ${message}`);
  }
  return undefined;
}
