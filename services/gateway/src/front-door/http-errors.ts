import type { ServerResponse } from "node:http";
import { FizzError, errorBody, httpStatusOf } from "@fizz/events";

/**
 * Answers with the shared error body (`{"error":{code,message,...}}`) and the status the code maps
 * to. `close` ends the connection after the answer: used when the client may still be sending a
 * body we refuse to read (413), so it is not drained just to keep the connection alive.
 */
export function sendError(
  res: ServerResponse,
  err: FizzError,
  requestId: string | undefined,
  close = false,
): number {
  const status = httpStatusOf(err.code);
  if (res.headersSent || res.destroyed) {
    res.destroy();
    return status;
  }
  const body = JSON.stringify(errorBody(err));
  const headers: string[] = [
    "content-type",
    "application/json",
    "content-length",
    String(Buffer.byteLength(body)),
  ];
  if (requestId !== undefined) headers.push("x-request-id", requestId);
  if (status === 429 || status === 503) headers.push("retry-after", "1");
  if (close) headers.push("connection", "close");
  res.writeHead(status, headers);
  res.end(body);
  return status;
}

/**
 * Scheduler errors as the client should see them. Codes that describe the function (NOT_FOUND,
 * NO_CAPACITY, FUNCTION_LOAD_FAILED, TIMEOUT, UNAVAILABLE, ...) pass through with their status;
 * a 4xx code about the request itself (MALFORMED_MESSAGE, VALIDATION_FAILED) would blame the
 * client for a gateway/scheduler mismatch, so it becomes INTERNAL.
 */
export function leaseError(err: unknown): FizzError {
  const fe = FizzError.from(err);
  const status = httpStatusOf(fe.code);
  if (status >= 400 && status < 500 && status !== 404 && status !== 429) {
    return new FizzError(
      "INTERNAL",
      `scheduler refused the lease request: ${fe.code}: ${fe.message}`,
      { cause: fe },
    );
  }
  return fe;
}

/** The function's timeout passed: shaped like undici's own, so both are mapped to 504 alike. */
export function answerTimeout(): Error {
  return Object.assign(new Error("the function did not answer in time"), {
    code: "UND_ERR_HEADERS_TIMEOUT",
  });
}

/**
 * undici's headers timeout, kept 1 s past the function's own as a backstop only: its timeouts
 * above 1 s tick every ~0.5 s, so the exact timer on the caller's side is what answers 504.
 */
export function headersBackstopMs(timeoutMs: number): number {
  return timeoutMs > 0 ? timeoutMs + 1000 : 0;
}
