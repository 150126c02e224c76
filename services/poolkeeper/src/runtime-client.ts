import type { FunctionRef } from "@fizz/events";
import { request, type Dispatcher } from "undici";

/** The body of POST /v2/specialize (docs/runtime-contract.md). */
export interface SpecializeBody {
  instanceId: string;
  function: FunctionRef;
  filename: string;
  /** base64 of the file. */
  code: string;
  entrypoint?: string;
  concurrency: number;
  /** sha256:<hex> of the code; the runtime refuses code that does not hash to it. */
  digest?: string;
}

/** The header that carries the instance's specialize token (FIZZ_SPECIALIZE_TOKEN). */
export const SPECIALIZE_TOKEN_HEADER = "x-fizz-specialize-token";

export type SpecializeOutcome =
  | { kind: "ok"; loadMs: number | undefined }
  /** The runtime answered 500: the user's code did not load. `message` is the loader's, verbatim. */
  | { kind: "load-failed"; message: string }
  /** Anything else: the instance is unusable (died, timed out, answered nonsense). */
  | { kind: "instance-failed"; message: string };

/** One POST, over the shared keep-alive agent; never throws. */
export async function postSpecialize(
  agent: Dispatcher,
  address: string,
  body: SpecializeBody,
  token: string | undefined,
  timeoutMs: number,
): Promise<SpecializeOutcome> {
  let status: number;
  let text: string;
  try {
    const res = await request(`${address}/v2/specialize`, {
      method: "POST",
      headers: {
        "content-type": "application/json",
        ...(token !== undefined ? { [SPECIALIZE_TOKEN_HEADER]: token } : {}),
      },
      body: JSON.stringify(body),
      dispatcher: agent,
      signal: AbortSignal.timeout(timeoutMs),
    });
    status = res.statusCode;
    text = await res.body.text();
  } catch (err) {
    const e = err as Error;
    const timedOut = e.name === "TimeoutError" || e.name === "AbortError";
    return {
      kind: "instance-failed",
      message: timedOut ? `no answer within ${timeoutMs} ms` : e.message,
    };
  }
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

function parseJson(text: string): Record<string, unknown> | undefined {
  try {
    const v: unknown = JSON.parse(text);
    return typeof v === "object" && v !== null ? (v as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}
