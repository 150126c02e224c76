import { CALL_MARKER_PREFIX, LOG_STREAM } from "@fizz/events";

/** Longest line passed on as one; a longer one is cut, so one print cannot grow memory. */
export const MAX_LINE = LOG_STREAM.maxLineBytes;

/** Ends a cut line, so a reader knows the rest of it was not kept. */
export const CUT_MARK = " [fizz: line cut]";

/**
 * Decides, per line, before it becomes a string: a line refused costs no decoding, and while the
 * budget is exhausted a whole chunk is dropped by counting its newlines.
 */
export interface LineGate {
  /** Once per chunk: tokens for the time that passed. */
  refill(): void;
  exhausted(): boolean;
  /** Takes one line of `bytes`, or counts it dropped and says no. */
  admit(bytes: number): boolean;
  /** Lines dropped in bulk (the budget was exhausted). */
  dropped(lines: number, bytes: number): void;
  /** After a chunk that dropped lines; `markerLost` when a call marker was among them. */
  settle(lines: number, markerLost: boolean): void;
}

const NL = 0x0a;
const CR = 0x0d;
const MARKER = Buffer.from(CALL_MARKER_PREFIX);

/**
 * Turns a stream of chunks into lines (without the trailing \n or \r\n), working on bytes: a
 * newline byte never occurs inside a UTF-8 sequence, so splitting before decoding is safe. A line
 * longer than `maxLineBytes` is cut at a character boundary, marked with CUT_MARK, and the rest of
 * it skipped up to its newline: at most one line is ever buffered.
 */
export class LineSplitter {
  private parts: Buffer[] = [];
  private partBytes = 0;
  /** Past a cut: bytes are skipped up to the next newline. */
  private skipping = false;
  private ended = false;
  private readonly max: number;

  constructor(
    private readonly emit: (line: string) => void,
    private readonly opts: { maxLineBytes?: number; gate?: LineGate } = {},
  ) {
    this.max = Math.max(CUT_MARK.length + 4, opts.maxLineBytes ?? MAX_LINE);
  }

  push(chunk: Buffer | string): void {
    if (this.ended) return;
    const buf = typeof chunk === "string" ? Buffer.from(chunk) : chunk;
    const gate = this.opts.gate;
    gate?.refill();
    let dropped = 0;
    let markerLost = false;
    let start = 0;
    while (start < buf.length) {
      if (gate && !this.skipping && this.partBytes === 0 && gate.exhausted()) {
        // The flood path: count the lines of the rest of the chunk and drop them.
        // An unterminated last line is dropped too, and the rest of it skipped when it comes.
        const rest = countLines(buf, start);
        const lines = rest.lines + (rest.partial > 0 ? 1 : 0);
        dropped += lines;
        markerLost ||= rest.marker;
        gate.dropped(lines, buf.length - start);
        this.skipping = rest.partial > 0;
        break;
      }
      const nl = buf.indexOf(NL, start);
      const end = nl < 0 ? buf.length : nl;
      if (this.skipping) {
        if (nl < 0) break;
        this.skipping = false;
        start = nl + 1;
        continue;
      }
      if (this.partBytes + (end - start) > this.max) {
        this.cut(buf.subarray(start, end));
        this.skipping = nl < 0;
        start = nl < 0 ? buf.length : nl + 1;
        continue;
      }
      if (nl < 0) {
        this.parts.push(buf.subarray(start));
        this.partBytes += buf.length - start;
        break;
      }
      const line = this.take(buf.subarray(start, end));
      start = nl + 1;
      if (!gate || gate.admit(line.length)) this.emit(decode(line));
      else {
        dropped++;
        markerLost ||= isMarker(line, 0);
      }
    }
    if (dropped > 0) gate?.settle(dropped, markerLost);
  }

  /** Flushes a last line without a newline (through the gate); idempotent. */
  end(): void {
    if (this.ended) return;
    this.ended = true;
    if (this.partBytes === 0) return;
    const line = this.take(Buffer.alloc(0));
    const gate = this.opts.gate;
    gate?.refill();
    if (!gate || gate.admit(line.length)) this.emit(decode(line));
    else gate.settle(1, isMarker(line, 0));
  }

  /** The buffered part plus `tail`, as one buffer; empties the buffer. */
  private take(tail: Buffer): Buffer {
    if (this.partBytes === 0) return tail;
    const all = Buffer.concat([...this.parts, tail]);
    this.parts = [];
    this.partBytes = 0;
    return all;
  }

  private cut(tail: Buffer): void {
    const all = this.take(tail);
    const keep = charBoundary(all, this.max - CUT_MARK.length);
    const line = decode(all.subarray(0, keep)) + CUT_MARK;
    const gate = this.opts.gate;
    if (!gate || gate.admit(Buffer.byteLength(line))) this.emit(line);
    else gate.settle(1, false);
  }
}

/** A line (already text) held to `maxLineBytes` the way LineSplitter cuts one. */
export function cutLine(line: string, maxLineBytes: number): string {
  const buf = Buffer.from(line);
  if (buf.length <= maxLineBytes) return line;
  return buf.toString("utf8", 0, charBoundary(buf, maxLineBytes - CUT_MARK.length)) + CUT_MARK;
}

/** Text of a line; a trailing \r (CRLF output) is not part of it. */
function decode(line: Buffer): string {
  const n = line.length > 0 && line[line.length - 1] === CR ? line.length - 1 : line.length;
  return line.toString("utf8", 0, n);
}

/** Largest n <= limit that does not split a UTF-8 sequence. */
function charBoundary(buf: Buffer, limit: number): number {
  let n = Math.min(limit, buf.length);
  // Continuation bytes are 10xxxxxx: back off to the start of that character.
  while (n > 0 && n < buf.length && ((buf[n] ?? 0) & 0xc0) === 0x80) n--;
  return n;
}

function isMarker(buf: Buffer, at: number): boolean {
  return buf[at] === MARKER[0] && buf.subarray(at, at + MARKER.length).equals(MARKER);
}

/** Complete lines from `start`, whether one of them is a call marker, and the unterminated tail. */
function countLines(
  buf: Buffer,
  start: number,
): { lines: number; marker: boolean; partial: number } {
  let lines = 0;
  let marker = false;
  let at = start;
  for (;;) {
    const nl = buf.indexOf(NL, at);
    marker ||= isMarker(buf, at);
    if (nl < 0) return { lines, marker, partial: buf.length - at };
    lines++;
    at = nl + 1;
  }
}
