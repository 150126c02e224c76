import type { Request, RequestHandler, Response } from "express";
import { FizzError, type LogLine, type Subjects } from "@fizz/events";
import type { Logger, NatsConnection } from "@fizz/kit";
import type { LogsConfig } from "./config";
import { adminOnly } from "./auth";
import { readLogs } from "./logs-read";
import type { Operations } from "./operations";

/**
 * `GET /v1/namespaces/{ns}/functions/{name}/logs`: a function's lines from LOG_STREAM as NDJSON
 * (one LogLine per line). `follow=true` keeps the answer open and streams new lines, with an
 * empty line as keep-alive (clients skip empty lines). Admin token only, like downloading code:
 * secrets are masked, but what functions print is their users' data.
 */
export const DEFAULT_TAIL = 200;
export const MAX_TAIL = 10_000;
const HEARTBEAT_MS = 15_000;
/** A client that has not taken what was written this long is dropped (memory stays bounded). */
const SLOW_CLIENT_MS = 30_000;
/** Bytes queued on the socket before the reader waits for the client. */
const HIGH_WATER_BYTES = 256 * 1024;

export interface LogQuery {
  since?: Date;
  tail?: number;
  instance?: string;
  follow: boolean;
}

const QUERY_FIELDS = new Set(["since", "tail", "instance", "follow"]);
const DURATION = /^(?:\d+(?:ms|s|m|h|d))+$/;
const DURATION_PART = /(\d+)(ms|s|m|h|d)/g;
const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };
const RFC3339 = /^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?:[Zz]|[+-]\d{2}:\d{2})$/;
const INSTANCE = /^[A-Za-z0-9._:-]{1,253}$/;

function invalid(field: string, message: string): FizzError {
  return new FizzError("VALIDATION_FAILED", `${field}: ${message}`, { field });
}

/** The query of a logs request; every refusal names its parameter. */
export function parseLogQuery(query: Record<string, unknown>, now: number): LogQuery {
  for (const key of Object.keys(query))
    if (!QUERY_FIELDS.has(key))
      throw invalid(key, "unknown parameter (since, tail, instance and follow are accepted)");
  const one = (field: string): string | undefined => {
    const v = query[field];
    if (v === undefined) return undefined;
    if (typeof v !== "string") throw invalid(field, "give it once, as a plain value");
    return v;
  };
  const out: LogQuery = { follow: false };
  const follow = one("follow");
  if (follow !== undefined) {
    if (!["true", "false", "1", "0"].includes(follow))
      throw invalid("follow", `must be true or false, got ${JSON.stringify(follow)}`);
    out.follow = follow === "true" || follow === "1";
  }
  const since = one("since");
  if (since !== undefined) out.since = new Date(parseSince(since, now));
  const tail = one("tail");
  if (tail !== undefined) {
    if (!/^\d{1,6}$/.test(tail) || Number(tail) > MAX_TAIL)
      throw invalid(
        "tail",
        `must be a whole number from 0 to ${MAX_TAIL}, got ${JSON.stringify(tail)}`,
      );
    out.tail = Number(tail);
  } else if (since === undefined) {
    out.tail = DEFAULT_TAIL;
  }
  const instance = one("instance");
  if (instance !== undefined) {
    if (!INSTANCE.test(instance))
      throw invalid("instance", `${JSON.stringify(instance)} is not an instance id`);
    out.instance = instance;
  }
  return out;
}

/** `10m`, `1h30m`, `500ms` (ago), or an RFC 3339 time; milliseconds since the epoch. */
function parseSince(value: string, now: number): number {
  if (DURATION.test(value)) {
    let ms = 0;
    for (const [, n, unit] of value.matchAll(DURATION_PART)) ms += Number(n) * UNIT_MS[unit!]!;
    if (!Number.isSafeInteger(ms) || ms > now)
      throw invalid("since", `${JSON.stringify(value)} reaches back before 1970`);
    return now - ms;
  }
  const t = RFC3339.test(value) ? Date.parse(value) : NaN;
  if (Number.isNaN(t))
    throw invalid(
      "since",
      `must be a duration like 10m, 2h, 30s or an RFC 3339 time like 2026-01-02T15:04:05Z, got ${JSON.stringify(value)}`,
    );
  return t;
}

export interface FunctionLogsOptions {
  nc: () => NatsConnection | undefined;
  subjects: Subjects;
  config: LogsConfig;
  logger: Logger;
  /** Keep-alive period of a follow; tests shorten it. */
  heartbeatMs?: number;
  /** How long a client may take nothing before it is dropped; tests shorten it. */
  slowClientMs?: number;
}

/** The endpoint's state: open follows (bounded) and every read, so stop() can end them. */
export class FunctionLogs {
  private follows = 0;
  private readonly reads = new Set<AbortController>();

  constructor(private readonly opts: FunctionLogsOptions) {}

  handler(operations: () => Operations): RequestHandler {
    const adminToken = adminOnly("reading a function's logs");
    return async (req: Request, res: Response) => {
      // Before anything else: a read-only token learns nothing, not even whether the query is valid.
      adminToken(req, res, () => undefined);
      // Before the first await: a client gone during the lookup must still end the read.
      const abort = new AbortController();
      res.on("close", () => abort.abort());
      const ns = String(req.params.ns ?? "");
      const name = String(req.params.name ?? "");
      const q = parseLogQuery(req.query, Date.now());
      // Unknown function: 404 like every other endpoint (names are checked there too).
      await operations().get("functions", ns, name);
      const subject = this.opts.subjects.logs(ns, name);
      const nc = this.opts.nc();
      if (!nc) throw new FizzError("UNAVAILABLE", "the registry is not connected to NATS");
      if (q.follow && this.follows >= this.opts.config.logFollowsMax)
        throw new FizzError(
          "NO_CAPACITY",
          `this registry already streams ${this.opts.config.logFollowsMax} log follows ` +
            "(FIZZ_LOG_FOLLOWS_MAX); try again later or without follow",
          { retryable: true },
        );
      if (abort.signal.aborted) return;
      if (q.follow) this.follows++;
      this.reads.add(abort);
      try {
        await this.stream(nc, subject, q, res, abort);
      } finally {
        this.reads.delete(abort);
        if (q.follow) this.follows--;
      }
    };
  }

  /** Ends every open read (the registry is stopping). */
  close(): void {
    for (const a of this.reads) a.abort();
  }

  private async stream(
    nc: NatsConnection,
    subject: string,
    q: LogQuery,
    res: Response,
    abort: AbortController,
  ): Promise<void> {
    const signal = abort.signal;
    const start = () => {
      if (res.headersSent) return;
      res.status(200).set({
        "content-type": "application/x-ndjson; charset=utf-8",
        "cache-control": "no-store",
        "x-content-type-options": "nosniff",
      });
      res.flushHeaders();
    };
    const put = async (text: string): Promise<void> => {
      start();
      // A socket that closed unseen (or was dropped as slow) would take writes forever.
      if (res.destroyed) abort.abort();
      if (signal.aborted) return;
      if (res.write(text) || res.writableLength < HIGH_WATER_BYTES) return;
      await clientTook(res, signal, this.opts.slowClientMs ?? SLOW_CLIENT_MS);
    };
    let lastWrite = Date.now();
    const heartbeatMs = this.opts.heartbeatMs ?? HEARTBEAT_MS;
    await readLogs(
      nc,
      {
        subject,
        ...(q.since ? { since: q.since } : {}),
        ...(q.tail !== undefined ? { tail: q.tail } : {}),
        ...(q.instance !== undefined ? { instance: q.instance } : {}),
        follow: q.follow,
        signal,
        pollMs: Math.max(1000, heartbeatMs),
      },
      {
        // A follow answers once its consumer exists, so a client told "connected" misses nothing.
        ready: () => {
          if (q.follow) start();
        },
        write: async (line: LogLine) => {
          lastWrite = Date.now();
          await put(JSON.stringify(line) + "\n");
        },
        idle: async () => {
          if (Date.now() - lastWrite < heartbeatMs) return;
          lastWrite = Date.now();
          await put("\n");
        },
      },
    );
    start();
    // Also when the registry stops: the client sees the end and reconnects (to another replica).
    if (!res.destroyed && !res.writableEnded) res.end();
  }
}

/** Waits for the socket to drain; a client that does not read in time loses the connection. */
function clientTook(res: Response, signal: AbortSignal, timeoutMs: number): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      res.off("drain", done);
      signal.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(() => {
      res.destroy();
      done();
    }, timeoutMs);
    res.once("drain", done);
    signal.addEventListener("abort", done, { once: true });
  });
}
