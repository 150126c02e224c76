import { timeNanos, type CriStream } from "./cri-log";

/** The query of GET /containerLogs as the apiserver forwards it (PodLogOptions, v1 spelling). */
export interface LogQuery {
  follow: boolean;
  previous: boolean;
  timestamps: boolean;
  tailLines: number | undefined;
  limitBytes: number | undefined;
  /** Entries older than this (ns since the epoch) are left out; from sinceTime or sinceSeconds. */
  sinceNanos: bigint | undefined;
  /** Which streams (PodLogsQuerySplitStreams): Stdout, Stderr or All. */
  streams: readonly CriStream[];
}

/** A query the endpoint refuses, naming the parameter. */
export class LogQueryError extends Error {
  constructor(
    readonly field: string,
    message: string,
  ) {
    super(`${field}: ${message}`);
  }
}

const STREAMS: Record<string, readonly CriStream[]> = {
  All: ["stdout", "stderr"],
  Stdout: ["stdout"],
  Stderr: ["stderr"],
};

function bool(q: URLSearchParams, field: string): boolean {
  const v = q.get(field);
  if (v === null || v === "" || v === "false" || v === "0") return false;
  if (v === "true" || v === "1") return true;
  throw new LogQueryError(field, `must be true or false, not "${v}"`);
}

function int(q: URLSearchParams, field: string, min: number): number | undefined {
  const v = q.get(field);
  if (v === null) return undefined;
  if (!/^-?\d+$/.test(v)) throw new LogQueryError(field, `must be an integer, not "${v}"`);
  const n = Number(v);
  if (!Number.isSafeInteger(n)) throw new LogQueryError(field, `is too large: "${v}"`);
  if (n < min) throw new LogQueryError(field, `must be at least ${min}, not ${n}`);
  return n;
}

/** Parses and checks the query as the kubelet's ValidatePodLogOptions does. */
export function parseLogQuery(q: URLSearchParams, nowMs = Date.now()): LogQuery {
  const sinceSeconds = int(q, "sinceSeconds", 1);
  const sinceTime = q.get("sinceTime");
  if (sinceSeconds !== undefined && sinceTime !== null)
    throw new LogQueryError("sinceTime", "at most one of sinceTime or sinceSeconds may be given");
  let sinceNanos: bigint | undefined;
  if (sinceSeconds !== undefined) sinceNanos = BigInt(nowMs - sinceSeconds * 1000) * 1_000_000n;
  else if (sinceTime !== null) {
    try {
      sinceNanos = timeNanos(sinceTime);
    } catch {
      throw new LogQueryError("sinceTime", `must be an RFC 3339 time, not "${sinceTime}"`);
    }
  }
  const stream = q.get("stream") ?? "All";
  const streams = STREAMS[stream];
  if (!streams) throw new LogQueryError("stream", `must be All, Stdout or Stderr, not "${stream}"`);
  const tailLines = int(q, "tailLines", 0);
  if (tailLines !== undefined && stream !== "All")
    throw new LogQueryError("tailLines", "cannot be combined with a stream other than All");
  return {
    follow: bool(q, "follow"),
    previous: bool(q, "previous"),
    timestamps: bool(q, "timestamps"),
    tailLines,
    limitBytes: int(q, "limitBytes", 1),
    sinceNanos,
    streams,
  };
}
