/**
 * The one progress line a terminal shows at its bottom (build-wait.ts's spinners), and the lines
 * printed above it. stdout and stderr share the terminal: a result line written while a spinner
 * is drawn would continue the spinner's line, and a spinner drawn after a partial line would
 * continue that one. So every line printed while waits may run goes through `print`, which
 * erases the progress line, writes, and draws it again below; and every spinner (several
 * packages of one wave build side by side) is an entry of the same line, never a line of its
 * own overwriting another's. Off a terminal nothing is drawn and `print` only writes.
 */

export interface Term {
  write(chunk: string): unknown;
  isTTY?: boolean;
  /** The terminal's width: a longer line would wrap, and `\r` erases only its last row. */
  columns?: number;
}

const ERASE = "\r\x1b[K";

export class StatusLine {
  private readonly entries = new Map<symbol, string>();
  private shown = false;
  /** The last text printed did not end its line: drawing now would continue it. */
  private midLine = false;

  constructor(private readonly term: Term) {}

  /** Shows or replaces an entry (one per wait); nothing off a terminal. */
  set(id: symbol, text: string): void {
    if (this.term.isTTY !== true) return;
    this.entries.set(id, text);
    this.draw();
  }

  remove(id: symbol): void {
    if (!this.entries.delete(id)) return;
    if (this.entries.size > 0) this.draw();
    else this.erase();
  }

  /** Writes `text` to `stream` (this terminal's stdout or stderr) above the progress line. */
  print(stream: { write(chunk: string): unknown }, text: string): void {
    this.erase();
    stream.write(text);
    if (text.length > 0) this.midLine = !text.endsWith("\n");
    this.draw();
  }

  private draw(): void {
    if (this.entries.size === 0 || this.midLine) return;
    let text = [...this.entries.values()].join("  ");
    const room = (this.term.columns ?? 0) - 1;
    if (room > 0 && text.length > room) text = `${text.slice(0, Math.max(0, room - 1))}…`;
    this.term.write(`${ERASE}${text}`);
    this.shown = true;
  }

  private erase(): void {
    if (this.shown) this.term.write(ERASE);
    this.shown = false;
  }
}

const lines = new WeakMap<object, StatusLine>();

/**
 * The status line of a stderr stream: one per stream, however many contexts (one per namespace,
 * spec/state.ts inNamespace) write to it.
 */
export function statusLineOf(stderr: Term): StatusLine {
  let line = lines.get(stderr);
  if (!line) {
    line = new StatusLine(stderr);
    lines.set(stderr, line);
  }
  return line;
}
