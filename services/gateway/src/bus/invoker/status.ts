import { createHash } from "node:crypto";
import { CallStatus, FizzError, type CallState } from "@fizz/events";
import { realClock, retryUntil } from "@fizz/kit";
import type { KV } from "@nats-io/kv";

/**
 * Call status in the JetStream KV bucket `fizz_calls`, keyed by call id, for every invocation on
 * FIZZ_INVOCATIONS (async HTTP, timers, watches): `queued` (accepted, or waiting for a retry),
 * `running` (an attempt started), `succeeded`/`failed` (final, with the function's answer). Entries
 * expire with the bucket's TTL (FIZZ_CALL_RETENTION_MS).
 *
 * It is also what makes redelivery safe: a redelivered invocation whose status is already final
 * was completed (and its result delivered) by an invoker that died before its ack reached the
 * server, so it is acknowledged without running again; `attempts` carries the attempt count across
 * deliveries (a delivery deferred for capacity is not an attempt).
 */
export const FINAL_STATES: ReadonlySet<CallState> = new Set<CallState>(["succeeded", "failed"]);
/** Stored in a status's headers when the stored body was cut: the original length. */
export const TRUNCATED_HEADER = "x-fizz-body-truncated";
/** Room left in a KV message for the status JSON around the body. */
const STATUS_OVERHEAD = 64 * 1024;

/**
 * Bytes of a body that fit a status or dead letter: the configured cap, within NATS's max_payload
 * (the body travels base64, 4/3 of its size, inside JSON).
 */
export function storedBodyLimit(configured: number, maxPayload: number): number {
  return Math.min(configured, Math.floor((Math.max(0, maxPayload - STATUS_OVERHEAD) * 3) / 4));
}

export class CallStore {
  /** Bytes of a response body kept in a status: the configured cap, within NATS's max_payload. */
  readonly maxBodyBytes: number;

  constructor(
    private readonly kv: KV,
    configuredMaxBytes: number,
    maxPayload: number,
  ) {
    this.maxBodyBytes = storedBodyLimit(configuredMaxBytes, maxPayload);
  }

  /** Call ids are free text (max 128); KV keys are not: unusual ids are stored under their hash. */
  static key(callId: string): string {
    return /^[A-Za-z0-9_=-]{1,128}$/.test(callId)
      ? callId
      : `h-${createHash("sha256").update(callId).digest("hex")}`;
  }

  async get(callId: string): Promise<CallStatus | undefined> {
    const e = await this.kv.get(CallStore.key(callId));
    if (!e || e.operation !== "PUT" || e.value.length === 0) return undefined;
    try {
      const parsed = CallStatus.safeParse(JSON.parse(e.string()));
      return parsed.success && parsed.data.callId === callId ? parsed.data : undefined;
    } catch {
      return undefined;
    }
  }

  /** Writes `queued` unless the call id is taken; the status already there otherwise. */
  async create(s: CallStatus): Promise<CallStatus | undefined> {
    try {
      await this.kv.create(CallStore.key(s.callId), encode(s));
      return undefined;
    } catch (err) {
      const existing = await this.get(s.callId);
      if (existing) return existing;
      throw FizzError.from(err, "UNAVAILABLE");
    }
  }

  /**
   * Overwrites the status. Retried for a while: a status lost to a NATS blip would make a
   * finished call run again on redelivery, or show `running` forever.
   */
  async put(s: CallStatus, signal?: AbortSignal, tries = 6): Promise<void> {
    const value = encode(s);
    try {
      await retryUntil(() => this.kv.put(CallStore.key(s.callId), value), {
        attempts: tries,
        baseMs: 200,
        maxMs: 3000,
        // Not `signal`: a stop cuts the pause short but never skips the write (a final status
        // written during a drain keeps the call from running again); it ends the retrying after.
        retryable: () => !signal?.aborted,
        clock: { now: () => Date.now(), sleep: (ms) => realClock.sleep(ms, signal) },
      });
    } catch (err) {
      throw FizzError.from(err, "UNAVAILABLE");
    }
  }

  async remove(callId: string): Promise<void> {
    await this.kv.delete(CallStore.key(callId));
  }

  /** The function's answer as stored: body cut to `maxBodyBytes` (noted in TRUNCATED_HEADER). */
  result(
    status: number,
    headers: Record<string, string>,
    body: Uint8Array,
  ): Pick<CallStatus, "status" | "headers" | "body"> {
    if (body.length <= this.maxBodyBytes) {
      return { status, headers, body: Buffer.from(body).toString("base64") };
    }
    return {
      status,
      headers: { ...headers, [TRUNCATED_HEADER]: String(body.length) },
      body: Buffer.from(body.subarray(0, this.maxBodyBytes)).toString("base64"),
    };
  }
}

function encode(s: CallStatus): Uint8Array {
  return Buffer.from(JSON.stringify(s));
}
