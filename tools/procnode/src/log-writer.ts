import { closeSync, fstatSync, openSync, renameSync, writeSync } from "node:fs";
import type { Readable } from "node:stream";
import { StringDecoder } from "node:string_decoder";
import { CriClock, formatCriEntry, type CriStream } from "./cri-log";

/** Longest content of one entry; a longer line is written as P entries (the CRI's own cap is 16 KiB). */
export const MAX_ENTRY = 16 * 1024;

export interface LogLimits {
  /** Rotate the file once it is larger than this (the kubelet's containerLogMaxSize is 10 MiB). */
  maxFileBytes: number;
}

export const DEFAULT_LOG_LIMITS: LogLimits = { maxFileBytes: 10 * 1024 * 1024 };

/**
 * Writes one container run's stdout and stderr to `file` as CRI entries. The writes are
 * synchronous, so procnode holds at most one pipe chunk and an unfinished line (≤ MAX_ENTRY) per
 * stream: a flooding container is slowed down (its pipe fills and its write() blocks, as under a
 * real container runtime), never dropped and never buffered without bound. When the file passes
 * `maxFileBytes` it is renamed to `<file>.1` (replacing an older one) and a new file begins, so a
 * run keeps at most about twice the cap on disk.
 */
export class ContainerLogWriter {
  private fd: number;
  private size: number;
  private readonly clock = new CriClock();
  private readonly pending: Record<CriStream, string> = { stdout: "", stderr: "" };
  /** Entries formatted but not yet written (one chunk's worth; flush() writes them at once). */
  private batch: string[] = [];
  private readonly decoders: Record<CriStream, StringDecoder> = {
    stdout: new StringDecoder("utf8"),
    stderr: new StringDecoder("utf8"),
  };
  private open = 0;
  private closed = false;
  /** Resolves once both pipes have ended and the last unterminated lines are written. */
  readonly done: Promise<void>;
  private markDone!: () => void;

  constructor(
    readonly file: string,
    private readonly limits: LogLimits = DEFAULT_LOG_LIMITS,
  ) {
    this.fd = openSync(file, "a");
    this.size = fstatSync(this.fd).size;
    this.done = new Promise((r) => (this.markDone = r));
  }

  /** Reads a child's pipe until it ends. */
  attach(stream: CriStream, pipe: Readable | null): void {
    if (!pipe) return;
    this.open++;
    pipe.on("data", (chunk: Buffer) => {
      this.write(stream, this.decoders[stream].write(chunk));
      // One chunk per turn of the event loop: a flooding container then waits on its full pipe
      // (back-pressure) instead of holding procnode's loop from other pods and the log endpoint.
      pipe.pause();
      setImmediate(() => pipe.resume());
    });
    pipe.once("close", () => {
      this.write(stream, this.decoders[stream].end());
      this.flushPending(stream);
      if (--this.open === 0) this.close();
    });
    pipe.on("error", () => undefined);
  }

  /** Text from a stream: complete lines become F entries, over-long runs P entries. */
  write(stream: CriStream, text: string): void {
    if (this.closed || text === "") return;
    let buf = this.pending[stream] + text;
    let nl: number;
    while ((nl = buf.indexOf("\n")) >= 0) {
      let line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      while (line.length > MAX_ENTRY) {
        this.entry(stream, true, line.slice(0, MAX_ENTRY));
        line = line.slice(MAX_ENTRY);
      }
      this.entry(stream, false, line.endsWith("\r") ? line.slice(0, -1) : line);
    }
    while (buf.length > MAX_ENTRY) {
      this.entry(stream, true, buf.slice(0, MAX_ENTRY));
      buf = buf.slice(MAX_ENTRY);
    }
    this.pending[stream] = buf;
    this.flush();
  }

  /** Ends the file: what is left of an unterminated line is written as a closed entry. */
  close(): void {
    if (this.closed) return;
    this.flushPending("stdout");
    this.flushPending("stderr");
    this.closed = true;
    closeSync(this.fd);
    this.markDone();
  }

  private flushPending(stream: CriStream): void {
    const rest = this.pending[stream];
    this.pending[stream] = "";
    if (rest !== "" && !this.closed) this.entry(stream, false, rest);
    this.flush();
  }

  private entry(stream: CriStream, partial: boolean, content: string): void {
    const text = formatCriEntry({ ts: this.clock.now(), stream, partial, content });
    const bytes = Buffer.byteLength(text);
    if (this.size > 0 && this.size + bytes > this.limits.maxFileBytes) this.rotate();
    this.batch.push(text);
    this.size += bytes;
  }

  /** One write for the entries of a chunk: a syscall per (short) line cost a flood seconds. */
  private flush(): void {
    if (this.batch.length === 0) return;
    const data = this.batch.join("");
    this.batch = [];
    writeSync(this.fd, data);
  }

  private rotate(): void {
    this.flush();
    closeSync(this.fd);
    renameSync(this.file, `${this.file}.1`);
    this.fd = openSync(this.file, "a");
    this.size = 0;
  }
}
