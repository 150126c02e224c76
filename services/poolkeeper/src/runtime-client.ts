import type { Readable } from "node:stream";
import { FizzError, type FunctionRef } from "@fizz/events";
import { instanceRequest, type InstanceAgent } from "./instance-http";

/** What both forms of POST /v2/specialize carry (docs/runtime-contract.md). */
export interface SpecializeMeta {
  instanceId: string;
  function: FunctionRef;
  entrypoint?: string;
  concurrency: number;
  /** The function's own variables. */
  env?: Record<string, string>;
  /** `{ "<name>": { "<key>": "<base64>" } }`: values, so never logged. */
  secrets?: Record<string, Record<string, string>>;
  configmaps?: Record<string, Record<string, string>>;
  /** sha256:<hex> of the code (or of the archive's bytes); the runtime refuses what does not hash to it. */
  digest: string;
  /**
   * Archive form only: the archive is this file in the instance's own work dir (a read-only link
   * to the poolkeeper's cached copy) and no bytes follow the line. Runtimes that read it: Go.
   */
  archiveFile?: string;
}

/** The JSON form: one file, base64. */
export interface SpecializeBody extends SpecializeMeta {
  filename: string;
  /** base64 of the file. */
  code: string;
}

/** The archive form: the JSON line, then the canonical tar.gz streamed from the store. */
export interface SpecializeArchive {
  meta: SpecializeMeta;
  /** The archive's bytes; destroyed when the request ends, however it ends. */
  archive: Readable;
  /** The bytes the archive must have (its ArchiveRef.size): Content-Length is sent up front. */
  size: number;
}

export const SPECIALIZE_TAR_TYPE = "application/vnd.fizz.specialize+tar";
/** The runtime's limit on the JSON line of the archive form. */
export const MAX_META_LINE_BYTES = 4 * 1024 * 1024;

/** The header that carries the instance's specialize token (FIZZ_SPECIALIZE_TOKEN). */
export const SPECIALIZE_TOKEN_HEADER = "x-fizz-specialize-token";

export type SpecializeOutcome =
  | { kind: "ok"; loadMs: number | undefined }
  /** The runtime answered 500: the user's code did not load. `message` is the loader's, verbatim. */
  | { kind: "load-failed"; message: string }
  /** Anything else: the instance is unusable (died, timed out, answered nonsense). */
  | { kind: "instance-failed"; message: string }
  /** The archive could not be read from the store (missing chunks, digest mismatch): not the instance's fault. */
  | { kind: "source-failed"; error: FizzError };

/** The archive form's first line; PAYLOAD_TOO_LARGE over the runtime's limit (checked before an instance is taken). */
export function metaLine(meta: SpecializeMeta): Buffer {
  const line = Buffer.from(`${JSON.stringify(meta)}\n`);
  if (line.length > MAX_META_LINE_BYTES)
    throw new FizzError(
      "PAYLOAD_TOO_LARGE",
      `the specialize header (env, secrets and configmaps) is ${line.length} bytes, over the runtime's limit of ${MAX_META_LINE_BYTES}`,
      { retryable: false },
    );
  return line;
}

/**
 * The most of a specialize answer read: a runtime's is a small JSON object (a load error's message
 * included: it is cut to 2,000 characters below anyway).
 */
const MAX_REPLY_BYTES = 256 * 1024;

/** One POST, over the shared keep-alive agent; never throws. */
export async function postSpecialize(
  agent: InstanceAgent,
  address: string,
  payload: SpecializeBody | SpecializeArchive,
  token: string | undefined,
  timeoutMs: number,
): Promise<SpecializeOutcome> {
  let status: number;
  let text: string;
  const source = "archive" in payload ? archiveBody(payload) : undefined;
  try {
    ({ status, text } = await instanceRequest(agent, address, "/v2/specialize", {
      method: "POST",
      headers: {
        "content-type": source ? SPECIALIZE_TAR_TYPE : "application/json",
        ...(source ? { "content-length": String(source.length) } : {}),
        ...(token !== undefined ? { [SPECIALIZE_TOKEN_HEADER]: token } : {}),
      },
      // A generator: its next chunk is asked for only once the socket took the last, so the
      // archive flows from the store to the instance without being held here.
      body: source ? source.body : JSON.stringify(payload),
      timeoutMs,
      maxReplyBytes: MAX_REPLY_BYTES,
      keepAlive: false,
    }));
  } catch (err) {
    const broken = source?.failed();
    if (broken) return { kind: "source-failed", error: broken };
    return { kind: "instance-failed", message: (err as Error).message };
  } finally {
    if ("archive" in payload) payload.archive.destroy();
  }
  // The runtime may answer before it read everything (or because the body broke off): a store
  // failure wins over its answer, so the instance is not blamed and no other one is tried.
  const broken = source?.failed();
  if (broken) return { kind: "source-failed", error: broken };
  const parsed = parseJson(text);
  if (status === 200) {
    const loadMs = typeof parsed?.loadMs === "number" ? parsed.loadMs : undefined;
    return { kind: "ok", loadMs };
  }
  const error = parsed?.error as Record<string, unknown> | undefined;
  const message =
    typeof error?.message === "string" ? error.message : text.slice(0, 2000) || `status ${status}`;
  if (status === 500) return { kind: "load-failed", message };
  const code = typeof error?.code === "string" ? `${error.code}: ` : "";
  return { kind: "instance-failed", message: `runtime answered ${status}: ${code}${message}` };
}

/**
 * The archive form's body: the JSON line, then the archive's bytes, checked against the size the
 * Content-Length promised (more or fewer bytes is the store's fault, reported as such, not a
 * broken instance). A read error of the store (DIGEST_MISMATCH at the end of the stream) is kept
 * so the caller can tell it from the instance's.
 */
function archiveBody(p: SpecializeArchive): {
  body: AsyncIterable<Uint8Array>;
  length: number;
  failed(): FizzError | undefined;
} {
  const line = metaLine(p.meta);
  let failure: FizzError | undefined;
  const fail = (err: unknown): never => {
    failure = FizzError.from(err);
    throw failure;
  };
  async function* body(): AsyncGenerator<Uint8Array> {
    yield line;
    let sent = 0;
    try {
      for await (const chunk of p.archive as AsyncIterable<Buffer>) {
        sent += chunk.length;
        if (sent > p.size) break;
        yield chunk;
      }
    } catch (err) {
      fail(err);
    }
    if (sent !== p.size)
      fail(
        new FizzError(
          "DIGEST_MISMATCH",
          `archive ${p.meta.digest} in the store is ${sent > p.size ? "longer" : "shorter"} than its ${p.size} bytes: tampered or corrupt, not loaded`,
          { field: "archive.digest", retryable: false },
        ),
      );
  }
  return { body: body(), length: line.length + p.size, failed: () => failure };
}

function parseJson(text: string): Record<string, unknown> | undefined {
  try {
    const v: unknown = JSON.parse(text);
    return typeof v === "object" && v !== null ? (v as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}
