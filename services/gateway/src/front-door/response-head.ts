import type { ServerResponse } from "node:http";
import { responseHeaders, type ResponseHeadersSeen } from "./headers";

const SEEN: ResponseHeadersSeen = { contentLength: false, length: -1, retryAfter: false };

/**
 * Writes an instance's response head to the client: its headers filtered (headers.ts), a
 * `retry-after` on a 429 that lacks one, and the head flushed at once for a stream. Returns the
 * body's length when the head gives one and a body follows, else -1.
 */
export function writeResponseHead(
  res: ServerResponse,
  method: string | undefined,
  requestId: string,
  status: number,
  raw: readonly (Buffer | string)[],
): number {
  // One object for every response: filled and read synchronously here, never kept.
  const seen = SEEN;
  seen.contentLength = false;
  seen.length = -1;
  seen.retryAfter = false;
  const h = responseHeaders(raw, requestId, seen);
  const { contentLength, length } = seen;
  if (status === 429 && !seen.retryAfter) h.push("retry-after", "1");
  res.writeHead(status, h);
  // A response without Content-Length is a stream (SSE, chunked): send the headers now, not
  // with the first chunk, which may be a long time coming.
  if (status === 204 || status === 304 || method === "HEAD") return -1;
  if (!contentLength) res.flushHeaders();
  return length;
}
