/**
 * Where a pod log follow stands, so a reconnect neither repeats nor loses a line.
 *
 * The follow asks for `timestamps=true`: every line starts with its entry's RFC 3339 timestamp
 * (nanoseconds). A reconnect asks `sinceTime`, which the API server forwards to the node with
 * whole seconds (it formats it as RFC 3339), so the node sends again every line from the start of
 * that second. The cursor keeps the last timestamp seen and how many lines carried exactly it;
 * after a reconnect it drops lines older than it and the first `count` lines at it. Lines of one
 * stream come in file order on every read, so this is exact even when two lines share a timestamp.
 */
export class LogCursor {
  private lastNs: bigint | undefined;
  private atLast = 0;
  /** Lines at `lastNs` still to skip in the current read (set by resume()). */
  private skipAtLast = 0;

  /** `sinceTime` for the next request: the last line's second, or undefined before any line. */
  sinceTime(): string | undefined {
    if (this.lastNs === undefined) return undefined;
    const second = new Date(Number(this.lastNs / 1_000_000_000n) * 1000);
    return second.toISOString().replace(/\.\d+Z$/, "Z");
  }

  /** A new read begins (a reconnect): the lines it repeats will be dropped. */
  resume(): void {
    this.skipAtLast = this.atLast;
  }

  /**
   * Starts the cursor at a time (an adopted pod: lines written before are not read again).
   * Lines before `ts` are dropped by the node itself (sinceTime); this only sets where to ask.
   */
  startAt(ts: string): void {
    this.lastNs = nanos(ts);
    this.atLast = 0;
  }

  /** The text of a line (its timestamp in ns) to pass on, or undefined when it was seen before. */
  accept(ns: bigint | undefined, text: string): string | undefined {
    if (ns === undefined) return text; // not timestamped: nothing to compare, pass it on
    if (this.lastNs !== undefined && ns < this.lastNs) return undefined;
    if (this.lastNs !== undefined && ns === this.lastNs) {
      if (this.skipAtLast > 0) {
        this.skipAtLast--;
        return undefined;
      }
      this.atLast++;
      return text;
    }
    this.lastNs = ns;
    this.atLast = 1;
    this.skipAtLast = 0;
    return text;
  }
}

/** Splits `<timestamp> <text>` as the API server sends lines with timestamps=true. */
export function splitTimestamp(line: string): { ts: string; ns: bigint | undefined; text: string } {
  const sp = line.indexOf(" ");
  const ns = sp > 0 ? nanos(line.slice(0, sp)) : undefined;
  if (ns !== undefined) return { ts: line.slice(0, sp), ns, text: line.slice(sp + 1) };
  return { ts: "", ns: undefined, text: line };
}

/** Nanoseconds since the epoch of an RFC 3339 UTC time, or undefined when it is not one. */
export function nanos(ts: string): bigint | undefined {
  const m = /^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?Z$/.exec(ts);
  if (!m) return undefined;
  const ms = Date.parse(`${m[1]}Z`);
  if (Number.isNaN(ms)) return undefined;
  return BigInt(ms) * 1_000_000n + BigInt((m[2] ?? "").padEnd(9, "0"));
}
