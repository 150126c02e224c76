/**
 * The transport shared by the registry client and `fn test`: it turns socket-level failures into
 * one readable sentence and non-2xx answers into ApiError, so no command handles fetch quirks.
 */
import { request as httpRequest, type IncomingMessage } from "node:http";
import { request as httpsRequest } from "node:https";
import type { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { ApiError, UnreachableError } from "./errors.js";

export type FetchFn = typeof globalThis.fetch;

/** Which server a request went to; only used to word errors. */
export interface Target {
  label: "registry" | "gateway";
  baseUrl: string;
}

export interface RawResponse {
  status: number;
  statusText: string;
  headers: Headers;
  body: Buffer;
}

/**
 * Sends one request and reads the whole body. Reading inside the same try matters: a connection
 * reset arrives while the body streams, not when fetch resolves.
 */
export async function send(
  fetchFn: FetchFn,
  target: Target,
  url: string,
  init: RequestInit,
  timeoutMs?: number,
): Promise<RawResponse> {
  try {
    const signal = timeoutMs === undefined ? undefined : AbortSignal.timeout(timeoutMs);
    const res = await fetchFn(url, { ...init, ...(signal ? { signal } : {}) });
    const body = Buffer.from(await res.arrayBuffer());
    return { status: res.status, statusText: res.statusText, headers: res.headers, body };
  } catch (err) {
    throw describeNetworkError(err, target, timeoutMs);
  }
}

/** A 2xx answer whose body has not been read yet (downloads stream it to a file). */
export interface StreamedResponse {
  status: number;
  headers: Headers;
  body: ReadableStream<Uint8Array> | null;
}

/**
 * Like send(), but a 2xx body is left unread for the caller to stream; an error answer is read
 * whole (it is small JSON) and returned as a RawResponse so the caller words it as usual.
 */
export async function open(
  fetchFn: FetchFn,
  target: Target,
  url: string,
  init: RequestInit,
  timeoutMs?: number,
): Promise<{ ok: true; res: StreamedResponse } | { ok: false; res: RawResponse }> {
  try {
    const signal = timeoutMs === undefined ? undefined : AbortSignal.timeout(timeoutMs);
    const res = await fetchFn(url, { ...init, ...(signal ? { signal } : {}) });
    if (isSuccess(res.status)) {
      return { ok: true, res: { status: res.status, headers: res.headers, body: res.body } };
    }
    const body = Buffer.from(await res.arrayBuffer());
    return {
      ok: false,
      res: { status: res.status, statusText: res.statusText, headers: res.headers, body },
    };
  } catch (err) {
    throw describeNetworkError(err, target, timeoutMs);
  }
}

/** The largest answer to an upload we read (the API answers small JSON). */
const MAX_UPLOAD_REPLY_BYTES = 1024 * 1024;

/**
 * Sends `body` as the request body with node:http, under backpressure end to end: fetch (undici)
 * reads an async-iterable body ahead of the socket, which held tens of MiB of a large upload in
 * memory. The registry may answer before the body is complete (413, a refused token): that answer
 * wins, and the rest of the body is not sent. `idleTimeoutMs` bounds silence, not the transfer.
 */
export function sendStream(
  target: Target,
  url: string,
  init: { method: string; headers: Record<string, string> },
  body: Readable,
  idleTimeoutMs: number,
): Promise<RawResponse> {
  return new Promise<RawResponse>((resolve, reject) => {
    const request = url.startsWith("https:") ? httpsRequest : httpRequest;
    const req = request(url, { method: init.method, headers: init.headers });
    let settled = false;
    const fail = (err: unknown) => {
      if (settled) return;
      settled = true;
      body.destroy();
      req.destroy();
      reject(describeNetworkError(err, target));
    };
    req.setTimeout(idleTimeoutMs, () => {
      const err = new Error("timeout");
      err.name = "TimeoutError";
      if (!settled) {
        settled = true;
        body.destroy();
        req.destroy();
        reject(describeNetworkError(err, target, idleTimeoutMs));
      }
    });
    let answered = false;
    // A server that answers early and closes breaks the pipe; the answer may be parsed just
    // after the write error, so give it a moment before calling the upload failed.
    const failUnlessAnswered = (err: unknown) => {
      setTimeout(() => {
        if (!answered) fail(err);
      }, 100);
    };
    req.on("error", failUnlessAnswered);
    req.on("response", (res: IncomingMessage) => {
      answered = true;
      const chunks: Buffer[] = [];
      let size = 0;
      res.on("data", (chunk: Buffer) => {
        size += chunk.length;
        if (size <= MAX_UPLOAD_REPLY_BYTES) chunks.push(chunk);
      });
      res.on("error", fail);
      res.on("end", () => {
        if (settled) return;
        settled = true;
        // An early answer: stop packing and sending what nobody reads any more.
        if (!req.writableFinished) {
          body.destroy();
          req.destroy();
        }
        resolve({
          status: res.statusCode ?? 0,
          statusText: res.statusMessage ?? "",
          headers: headersOf(res),
          body: Buffer.concat(chunks),
        });
      });
    });
    pipeline(body, req).catch(failUnlessAnswered);
  });
}

function headersOf(res: IncomingMessage): Headers {
  const headers = new Headers();
  for (const [name, value] of Object.entries(res.headers)) {
    if (value === undefined) continue;
    for (const v of Array.isArray(value) ? value : [value]) headers.append(name, v);
  }
  return headers;
}

export function describeNetworkError(err: unknown, target: Target, timeoutMs?: number): Error {
  if (err instanceof Error && err.name === "TimeoutError" && timeoutMs !== undefined) {
    return new UnreachableError(
      `the ${target.label} at ${target.baseUrl} did not answer within ${timeoutMs / 1000}s`,
    );
  }
  const cause = socketCause(err) ?? fetchFailure(err);
  if (!cause) return err instanceof Error ? err : new Error(String(err));
  if (cause.code === "ECONNREFUSED") {
    return new UnreachableError(
      `cannot reach the ${target.label} at ${target.baseUrl}: is "npm start" running?`,
    );
  }
  return new UnreachableError(
    `cannot reach the ${target.label} at ${target.baseUrl}: ${cause.message}`,
  );
}

interface SocketError {
  code: string;
  message: string;
}

/**
 * fetch reports every socket failure as `TypeError("fetch failed")` with the real error in
 * `cause`; when a host name resolves to several addresses the cause is an AggregateError holding
 * one error per address. Dig out the first error that carries a system code.
 */
function socketCause(err: unknown, depth = 0): SocketError | undefined {
  if (depth > 5 || typeof err !== "object" || err === null) return undefined;
  const e = err as { code?: unknown; message?: unknown; cause?: unknown; errors?: unknown };
  if (typeof e.code === "string" && /^(E[A-Z]+|UND_ERR_[A-Z_]+)$/.test(e.code)) {
    return {
      code: e.code,
      message: typeof e.message === "string" && e.message ? e.message : e.code,
    };
  }
  if (Array.isArray(e.errors)) {
    for (const inner of e.errors) {
      const found = socketCause(inner, depth + 1);
      if (found) return found;
    }
  }
  return socketCause(e.cause, depth + 1);
}

/** A failure fetch itself raised (e.g. "bad port" for a port browsers block), reported as is. */
function fetchFailure(err: unknown): SocketError | undefined {
  if (!(err instanceof TypeError) || err.message !== "fetch failed") return undefined;
  const cause = err.cause;
  return { code: "", message: cause instanceof Error ? cause.message : err.message };
}

/** The longest error body text we echo; a proxy's HTML page is noise beyond this. */
const MAX_ERROR_TEXT = 500;

/**
 * Interprets a non-2xx answer. The platform answers `{ "error": { code, message, field } }`;
 * anything else (a proxy, a function's own error text) is passed on as trimmed text.
 */
export function errorFromResponse(res: RawResponse): ApiError {
  const text = res.body.toString("utf8");
  const apiError = parseErrorBody(text);
  if (apiError) return new ApiError(res.status, apiError.message, apiError.code, apiError.field);
  const trimmed = text.trim();
  const shown = trimmed.length > MAX_ERROR_TEXT ? `${trimmed.slice(0, MAX_ERROR_TEXT)}…` : trimmed;
  return new ApiError(res.status, shown || res.statusText || "(empty body)");
}

function parseErrorBody(
  text: string,
): { message: string; code?: string; field?: string } | undefined {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (typeof parsed !== "object" || parsed === null) return undefined;
  const error = (parsed as { error?: unknown }).error;
  if (typeof error !== "object" || error === null) return undefined;
  const { message, code, field } = error as Record<string, unknown>;
  if (typeof message !== "string" && typeof code !== "string") return undefined;
  return {
    message: typeof message === "string" ? message : String(code),
    ...(typeof code === "string" ? { code } : {}),
    ...(typeof field === "string" ? { field } : {}),
  };
}

export function isSuccess(status: number): boolean {
  return status >= 200 && status < 300;
}
