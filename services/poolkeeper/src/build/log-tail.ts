import { BUILD_LOG_MAX_CHARS } from "@fizz/events";

/**
 * The last `max` characters of a build's output (stdout and stderr interleaved, as they came),
 * with the platform's own lines ("$ npm ci ...") among them. Memory stays bounded whatever the
 * build prints: the buffer is cut back to `max` whenever it reaches twice that.
 */
export class LogTail {
  private buf = "";
  private dropped = 0;

  constructor(private readonly max: number = BUILD_LOG_MAX_CHARS) {}

  write(chunk: string): void {
    this.buf += chunk;
    if (this.buf.length >= 2 * this.max) this.trim();
  }

  /** A line of the platform's own, on a line of its own. */
  note(line: string): void {
    if (this.buf.length > 0 && !this.buf.endsWith("\n")) this.buf += "\n";
    this.write(`${line}\n`);
  }

  /** Whether anything was cut from the front. */
  get truncated(): boolean {
    return this.dropped > 0 || this.buf.length > this.max;
  }

  /** At most `max` characters; a cut front is marked so a reader knows the start is missing. */
  text(): string {
    this.trim();
    if (this.dropped === 0) return this.buf;
    const mark = `[... ${this.dropped} earlier characters cut]\n`;
    return mark + this.buf.slice(Math.min(this.buf.length, mark.length));
  }

  /** The last non-empty line, for a one-line failure message. */
  lastLine(): string | undefined {
    const lines = this.buf.split("\n");
    for (let i = lines.length - 1; i >= 0; i--) {
      const l = lines[i]?.trim();
      if (l) return l.length > 300 ? `${l.slice(0, 300)}...` : l;
    }
    return undefined;
  }

  private trim(): void {
    if (this.buf.length <= this.max) return;
    this.dropped += this.buf.length - this.max;
    this.buf = this.buf.slice(this.buf.length - this.max);
  }
}
