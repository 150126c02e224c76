/**
 * Container log files in the CRI format the kubelet reads (one entry per line):
 *   `<RFC3339Nano timestamp> <stdout|stderr> <F|P> <content>`
 * F closes a line; P is a piece of a line longer than the entry cap, continued by the next entry.
 * Storing the stream and a timestamp per entry is what lets `kubectl logs` select a stream, honour
 * `sinceTime` and print timestamps.
 */
export type CriStream = "stdout" | "stderr";

export interface CriEntry {
  /** Fixed nine fractional digits, UTC, as the kubelet's RFC3339NanoFixed: sorts as text. */
  ts: string;
  stream: CriStream;
  partial: boolean;
  content: string;
}

export function formatCriEntry(e: CriEntry): string {
  return `${e.ts} ${e.stream} ${e.partial ? "P" : "F"} ${e.content}\n`;
}

const ENTRY = /^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,9})?Z) (stdout|stderr) ([FP]) /;

/** One line of a CRI log file (without its newline), or undefined when it is not one. */
export function parseCriEntry(line: string): CriEntry | undefined {
  const m = ENTRY.exec(line);
  if (!m) return undefined;
  return {
    ts: m[1] ?? "",
    stream: m[2] as CriStream,
    partial: m[3] === "P",
    content: line.slice(m[0].length),
  };
}

/** Nanoseconds since the epoch of an RFC 3339 time with up to nine fractional digits. */
export function timeNanos(ts: string): bigint {
  const m = /^(.*?)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)$/.exec(ts);
  const ms = Date.parse(`${m?.[1] ?? ts}${m?.[3] ?? ""}`);
  if (!m || Number.isNaN(ms)) throw new Error(`not an RFC 3339 time: ${ts}`);
  return BigInt(ms) * 1_000_000n + BigInt((m[2] ?? "").padEnd(9, "0") || "0");
}

export function formatNanos(ns: bigint): string {
  const ms = Number(ns / 1_000_000n);
  const frac = (ns % 1_000_000_000n).toString().padStart(9, "0");
  return new Date(ms).toISOString().replace(/\.\d{3}Z$/, `.${frac}Z`);
}

/**
 * Timestamps for one container's entries: wall-clock nanoseconds, made strictly increasing, so a
 * timestamp names one entry and a reader resuming at `sinceTime` can tell which it has seen.
 */
export class CriClock {
  private last = 0n;
  /** The formatted second of the last timestamp: a flood formats thousands per second. */
  private second = -1n;
  private prefix = "";

  now(): string {
    const wall = BigInt(Date.now()) * 1_000_000n;
    this.last = wall > this.last ? wall : this.last + 1n;
    const sec = this.last / 1_000_000_000n;
    if (sec !== this.second) {
      this.second = sec;
      this.prefix = new Date(Number(sec) * 1000).toISOString().slice(0, 19);
    }
    return `${this.prefix}.${(this.last % 1_000_000_000n).toString().padStart(9, "0")}Z`;
  }
}
