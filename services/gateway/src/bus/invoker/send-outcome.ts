import { FizzError, type ErrorCode } from "@fizz/events";
import type { Dispatcher } from "undici";
import { isHopByHop, type LeaseEntry, type LeaseManager } from "../../front-door/index";
import { CallFailure, type CallResult } from "./call-types";

/**
 * What one send of a bus-side call came to (invoke.ts): an answer passed on, a refusal that is
 * sent again because the function did not run (421, 503 NOT_SPECIALIZED, 429 INSTANCE_BUSY, a
 * connection that never opened), or a failure thrown to the caller. Each path gives the lease
 * back in the state the scheduler must learn (dropped, excluded, or released).
 */

/** The connection never opened: nothing was sent, so the function did not run. */
const CONNECT_FAILED = new Set([
  "ECONNREFUSED",
  "UND_ERR_CONNECT_TIMEOUT",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "ENOTFOUND",
  "EADDRNOTAVAIL",
]);

/** A 503/429 body is inspected for the runtime's error code only up to this size. */
const INSPECT_LIMIT = 16 * 1024;

export type Sent =
  | { kind: "done"; result: CallResult }
  | { kind: "again"; avoid: string | undefined; error: CallFailure };

/** A complete answer: passed on, or (421, 503 NOT_SPECIALIZED, 429 INSTANCE_BUSY) sent again. */
export function answered(
  leases: LeaseManager,
  e: LeaseEntry,
  status: number,
  headers: Record<string, string>,
  body: Buffer,
  startedAt: number,
): Sent {
  if (status === 421) {
    leases.drop(e, true);
    leases.release(e, false);
    return again(undefined, "MISDIRECTED", "instance refused the call as misdirected (421)");
  }
  if ((status === 503 || status === 429) && body.length <= INSPECT_LIMIT) {
    const code = errorCodeOf(body);
    if (status === 503 && code === "NOT_SPECIALIZED") {
      leases.drop(e, true);
      leases.release(e, false);
      return again(undefined, "NOT_SPECIALIZED", "instance is not specialized (503)");
    }
    if (status === 429 && code === "INSTANCE_BUSY") {
      leases.release(e, false);
      return again(e.instanceId, "INSTANCE_BUSY", "instance is at its concurrency limit (429)");
    }
  }
  leases.release(e);
  return {
    kind: "done",
    result: {
      status,
      headers,
      body,
      durationMs: performance.now() - startedAt,
    },
  };
}

function again(avoid: string | undefined, code: ErrorCode, message: string): Sent {
  return { kind: "again", avoid, error: new CallFailure(code, message, true) };
}

/** The upstream request failed: whose fault, and did the function run? */
export function failed(
  leases: LeaseManager,
  e: LeaseEntry,
  err: unknown,
  signal: AbortSignal | undefined,
): Sent {
  const code = (err as { code?: string }).code ?? "";
  if (signal?.aborted) {
    leases.release(e, false);
    throw stopped(err);
  }
  if (code === "UND_ERR_INVALID_ARG") {
    leases.release(e, false);
    throw new FizzError("VALIDATION_FAILED", `call cannot be sent: ${(err as Error).message}`, {
      cause: err,
    });
  }
  // A hung or dead instance: dropped before its slot is given back (a waiting request must not
  // get it), and named as failed in the next lease request so the scheduler replaces it.
  leases.drop(e, true);
  if (CONNECT_FAILED.has(code)) {
    leases.release(e, false);
    return again(undefined, "INSTANCE_FAILED", `instance unreachable: ${(err as Error).message}`);
  }
  leases.release(e);
  if (code === "UND_ERR_HEADERS_TIMEOUT" || code === "UND_ERR_BODY_TIMEOUT") {
    throw new CallFailure(
      "TIMEOUT",
      `function ${e.fn.name} did not answer within ${e.timeoutMs} ms`,
      false,
      err,
    );
  }
  throw new CallFailure(
    "INSTANCE_FAILED",
    `instance failed: ${(err as Error).message}`,
    false,
    err,
  );
}

export function stopped(cause?: unknown): CallFailure {
  return new CallFailure("UNAVAILABLE", "the gateway is stopping", true, cause);
}

export async function readBody(
  body: Dispatcher.ResponseData["body"],
  limit: number,
): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let n = 0;
  for await (const chunk of body) {
    const c = chunk as Buffer;
    n += c.length;
    if (n > limit) {
      body.destroy();
      throw new CallFailure(
        "PAYLOAD_TOO_LARGE",
        `the function's response exceeds ${limit} bytes`,
        false,
      );
    }
    chunks.push(c);
  }
  return chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks, n);
}

export function plainHeaders(
  h: Record<string, string | string[] | undefined>,
): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, v] of Object.entries(h)) {
    if (v === undefined) continue;
    const lower = name.toLowerCase();
    if (isHopByHop(lower) || lower === "content-length") continue;
    out[lower] = Array.isArray(v) ? v.join(", ") : v;
  }
  return out;
}

/** plainHeaders for the upstream client's flat [name, value, ...] list. */
export function rawHeaders(raw: readonly string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const lower = (raw[i] as string).toLowerCase();
    if (isHopByHop(lower) || lower === "content-length") continue;
    const v = raw[i + 1] as string;
    const had = out[lower];
    out[lower] = had === undefined ? v : `${had}, ${v}`;
  }
  return out;
}

function errorCodeOf(body: Buffer): string | undefined {
  try {
    const v = JSON.parse(body.toString("utf8")) as { error?: { code?: unknown } } | null;
    return typeof v?.error?.code === "string" ? v.error.code : undefined;
  } catch {
    return undefined;
  }
}
