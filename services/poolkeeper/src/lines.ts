/** Longest line passed on as one; a longer run without a newline is cut, so one print cannot grow memory. */
export const MAX_LINE = 16 * 1024;

/** Turns a stream of text chunks into lines (without the trailing \n or \r\n). */
export class LineSplitter {
  private buf = "";
  private ended = false;

  constructor(private readonly emit: (line: string) => void) {}

  push(chunk: string): void {
    if (this.ended) return;
    this.buf += chunk;
    let nl: number;
    while ((nl = this.buf.indexOf("\n")) >= 0) {
      const line = this.buf.slice(0, nl);
      this.buf = this.buf.slice(nl + 1);
      this.emit(line.endsWith("\r") ? line.slice(0, -1) : line);
    }
    while (this.buf.length > MAX_LINE) {
      this.emit(this.buf.slice(0, MAX_LINE));
      this.buf = this.buf.slice(MAX_LINE);
    }
  }

  /** Flushes a last line without a newline; idempotent. */
  end(): void {
    if (this.ended) return;
    this.ended = true;
    if (this.buf.length > 0) this.emit(this.buf);
    this.buf = "";
  }
}
