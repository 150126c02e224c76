import { upstreamClient } from "./upstream-client";
import type { UpstreamHandler } from "./upstream-types";

/**
 * One whole request and response over the upstream client, as a promise: what the bus side's calls
 * (async invocations, message-queue triggers) need, where the body is in memory and the answer is
 * kept whole. The proxy streams instead and drives the client's handler itself.
 */
export interface WholeRequest {
  method: string;
  path: string;
  headers: readonly string[];
  body: Uint8Array | null;
  /** The function's timeout to the answer's head, exact; 0: none. */
  answerTimeout: number;
  headersTimeout: number;
  bodyTimeout: number;
  /** An answer longer than this fails with ResponseTooLarge (the function ran). */
  maxResponseBytes: number;
  /** Aborts the call with the signal's reason. */
  signal?: AbortSignal | undefined;
}

export interface WholeResponse {
  status: number;
  /** Flat [name, value, ...], as the instance sent them. */
  raw: string[];
  body: Buffer;
}

/** The answer's body went past `maxResponseBytes`: the rest was not read, the connection closed. */
export class ResponseTooLarge extends Error {
  constructor(readonly limit: number) {
    super(`the function's response exceeds ${limit} bytes`);
  }
}

const NEVER = new AbortController().signal;

export function upstreamRequest(address: string, req: WholeRequest): Promise<WholeResponse> {
  return new Promise((resolve, reject) => {
    const signal = req.signal ?? NEVER;
    let abort: ((err?: Error) => void) | undefined;
    let settled = false;
    const onAbort = (): void => {
      const reason = signal.reason as Error;
      // Before the connection is up there is nothing to cut yet: the call ends now, and the
      // request is stopped before its head is written (onConnect below).
      if (abort !== undefined) abort(reason);
      else settle(reason);
    };
    const settle = (err: Error | undefined, res?: WholeResponse): void => {
      if (settled) return;
      settled = true;
      signal.removeEventListener("abort", onAbort);
      if (err !== undefined) reject(err);
      else resolve(res as WholeResponse);
    };
    let status = 0;
    let raw: string[] = [];
    const chunks: Buffer[] = [];
    let size = 0;
    const handler: UpstreamHandler = {
      onConnect(cut) {
        if (settled || signal.aborted) cut(signal.reason as Error);
        else abort = cut;
      },
      onHeaders(s, headers) {
        status = s;
        raw = headers;
        return true;
      },
      onData(chunk) {
        size += chunk.length;
        if (size > req.maxResponseBytes) abort?.(new ResponseTooLarge(req.maxResponseBytes));
        else chunks.push(chunk);
        return true;
      },
      onComplete() {
        const body = chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks, size);
        settle(undefined, { status, raw, body });
      },
      onError(err) {
        settle(err);
      },
    };
    if (signal.aborted) {
      settle(signal.reason as Error);
      return;
    }
    signal.addEventListener("abort", onAbort);
    upstreamClient(address).dispatch(
      {
        method: req.method,
        path: req.path,
        headers: req.headers,
        ...(req.body !== null ? { body: req.body } : {}),
        answerTimeout: req.answerTimeout,
        headersTimeout: req.headersTimeout,
        bodyTimeout: req.bodyTimeout,
      },
      handler,
    );
  });
}
