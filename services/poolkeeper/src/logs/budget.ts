import type { Clock } from "@fizz/kit";

/** Per-instance log limits (FIZZ_LOG_LINES_PER_SECOND, FIZZ_LOG_BYTES_PER_SECOND, FIZZ_LOG_BURST_SECONDS). */
export interface LogLimits {
  linesPerSecond: number;
  bytesPerSecond: number;
  /** How many seconds' worth each bucket holds: a quiet function may print that much at once. */
  burstSeconds: number;
}

/** Which limit refused a line: the announcement names it ("total": the poolkeeper-wide one). */
export type DropReason = "lines" | "bytes" | "total";

export interface PendingDrops {
  lines: number;
  bytes: number;
  reason: DropReason;
}

/**
 * Two token buckets (lines and bytes) for one instance. Own code rather than a rate-limit
 * library: it runs once per output line on the hot path, must cost a few arithmetic operations,
 * and takes kit's Clock so unit tests are exact. Refilled once per chunk (`refill`), not per
 * line, so the flood path reads no clock per line.
 *
 * With `shared` (the poolkeeper-wide budget, one for all instances) a line also takes from that:
 * many instances each within their own budget still cannot flood the bus and FIZZ_LOGS together.
 */
export class LogBudget {
  private lines: number;
  private bytes: number;
  private readonly maxLines: number;
  private readonly maxBytes: number;
  private last: number;
  private pending: PendingDrops | undefined;

  constructor(
    readonly limits: LogLimits,
    private readonly clock: Pick<Clock, "now">,
    /** The longest line: the byte bucket always holds at least one, or such a line could never pass. */
    minBytesCapacity = 0,
    readonly shared?: LogBudget,
  ) {
    this.maxLines = Math.max(1, limits.linesPerSecond * limits.burstSeconds);
    this.maxBytes = Math.max(minBytesCapacity, limits.bytesPerSecond * limits.burstSeconds);
    this.lines = this.maxLines;
    this.bytes = this.maxBytes;
    this.last = clock.now();
  }

  refill(): void {
    this.shared?.refill();
    const now = this.clock.now();
    const dt = (now - this.last) / 1000;
    if (dt <= 0) return;
    this.last = now;
    this.lines = Math.min(this.maxLines, this.lines + dt * this.limits.linesPerSecond);
    this.bytes = Math.min(this.maxBytes, this.bytes + dt * this.limits.bytesPerSecond);
  }

  /** True when not even one more line fits: the caller can drop a whole chunk without looking. */
  exhausted(): boolean {
    return this.lines < 1 || this.bytes < 1 || (this.shared?.exhausted() ?? false);
  }

  /** Takes one line of `bytes` if every bucket (the shared ones too) allows it; else records the drop. */
  admit(bytes: number): boolean {
    if (this.lines >= 1 && this.bytes >= bytes && (this.shared?.take(bytes) ?? true)) {
      this.lines -= 1;
      this.bytes -= bytes;
      return true;
    }
    this.dropped(1, bytes, this.why(bytes));
    return false;
  }

  /** Lines refused (or dropped in bulk by a caller that saw `exhausted`). */
  dropped(lines: number, bytes: number, reason = this.why(1)): void {
    if (lines <= 0) return;
    if (this.pending) {
      this.pending.lines += lines;
      this.pending.bytes += bytes;
    } else this.pending = { lines, bytes, reason };
  }

  /** Which bucket refused a line of `bytes`: the instance's own before the shared one. */
  private why(bytes: number): DropReason {
    if (this.lines < 1) return "lines";
    return this.bytes < Math.max(1, bytes) ? "bytes" : "total";
  }

  /** Takes one line of `bytes` when it fits, recording nothing (the shared budget's part). */
  private take(bytes: number): boolean {
    if (this.lines < 1 || this.bytes < bytes) return false;
    this.lines -= 1;
    this.bytes -= bytes;
    return true;
  }

  /** The drops since the last call, for the once-a-second announcement. */
  takeDrops(): PendingDrops | undefined {
    const p = this.pending;
    this.pending = undefined;
    return p;
  }
}

/** "fizz: dropped 12345 lines (over 1000 lines/s)", the `system` line of an announcement. */
export function dropAnnouncement(
  drops: PendingDrops,
  limits: LogLimits,
  total?: LogLimits,
): string {
  const over =
    drops.reason === "lines"
      ? `over ${limits.linesPerSecond} lines/s`
      : drops.reason === "bytes"
        ? `over ${formatBytes(limits.bytesPerSecond)}/s`
        : total
          ? `the poolkeeper's ${total.linesPerSecond} lines/s, ${formatBytes(total.bytesPerSecond)}/s for all instances is spent`
          : "the poolkeeper's budget for all instances is spent";
  return `fizz: dropped ${drops.lines} line${drops.lines === 1 ? "" : "s"} (${over})`;
}

function formatBytes(n: number): string {
  if (n >= 1024 * 1024 && n % (1024 * 1024) === 0) return `${n / (1024 * 1024)} MiB`;
  if (n >= 1024 && n % 1024 === 0) return `${n / 1024} KiB`;
  return `${n} bytes`;
}
