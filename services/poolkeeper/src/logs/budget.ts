import type { Clock } from "@fizz/kit";

/** Per-instance log limits (FIZZ_LOG_LINES_PER_SECOND, FIZZ_LOG_BYTES_PER_SECOND, FIZZ_LOG_BURST_SECONDS). */
export interface LogLimits {
  linesPerSecond: number;
  bytesPerSecond: number;
  /** How many seconds' worth each bucket holds: a quiet function may print that much at once. */
  burstSeconds: number;
}

/** Which limit refused a line: the announcement names it. */
export type DropReason = "lines" | "bytes";

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
  ) {
    this.maxLines = Math.max(1, limits.linesPerSecond * limits.burstSeconds);
    this.maxBytes = Math.max(minBytesCapacity, limits.bytesPerSecond * limits.burstSeconds);
    this.lines = this.maxLines;
    this.bytes = this.maxBytes;
    this.last = clock.now();
  }

  refill(): void {
    const now = this.clock.now();
    const dt = (now - this.last) / 1000;
    if (dt <= 0) return;
    this.last = now;
    this.lines = Math.min(this.maxLines, this.lines + dt * this.limits.linesPerSecond);
    this.bytes = Math.min(this.maxBytes, this.bytes + dt * this.limits.bytesPerSecond);
  }

  /** True when not even one more line fits: the caller can drop a whole chunk without looking. */
  exhausted(): boolean {
    return this.lines < 1 || this.bytes < 1;
  }

  /** Takes one line of `bytes` if both buckets allow it; otherwise records the drop. */
  admit(bytes: number): boolean {
    if (this.lines >= 1 && this.bytes >= bytes) {
      this.lines -= 1;
      this.bytes -= bytes;
      return true;
    }
    this.dropped(1, bytes);
    return false;
  }

  /** Lines refused (or dropped in bulk by a caller that saw `exhausted`). */
  dropped(lines: number, bytes: number): void {
    if (lines <= 0) return;
    const reason: DropReason = this.lines < 1 ? "lines" : "bytes";
    if (this.pending) {
      this.pending.lines += lines;
      this.pending.bytes += bytes;
    } else this.pending = { lines, bytes, reason };
  }

  /** The drops since the last call, for the once-a-second announcement. */
  takeDrops(): PendingDrops | undefined {
    const p = this.pending;
    this.pending = undefined;
    return p;
  }
}

/** "fizz: dropped 12345 lines (over 1000 lines/s)", the `system` line of an announcement. */
export function dropAnnouncement(drops: PendingDrops, limits: LogLimits): string {
  const over =
    drops.reason === "lines"
      ? `over ${limits.linesPerSecond} lines/s`
      : `over ${formatBytes(limits.bytesPerSecond)}/s`;
  return `fizz: dropped ${drops.lines} line${drops.lines === 1 ? "" : "s"} (${over})`;
}

function formatBytes(n: number): string {
  if (n >= 1024 * 1024 && n % (1024 * 1024) === 0) return `${n / (1024 * 1024)} MiB`;
  if (n >= 1024 && n % 1024 === 0) return `${n / 1024} KiB`;
  return `${n} bytes`;
}
