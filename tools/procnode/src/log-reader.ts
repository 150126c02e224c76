import { existsSync } from "node:fs";
import { open, stat, type FileHandle } from "node:fs/promises";
import { parseCriEntry, timeNanos, type CriEntry } from "./cri-log";
import type { LogQuery } from "./log-query";

/** One container run's log as the reader sees it. */
export interface LogSource {
  /** The run's CRI log file; `<file>.1` is its rotated older part. */
  file: string;
  /** True while the file may still grow (the container runs, or its pipes are being drained). */
  live(): boolean;
}

/** Where the text goes; resolves when it can take more (backpressure from a slow client). */
export type LogSink = (text: string) => Promise<void>;

const CHUNK = 64 * 1024;
const POLL_MS = 100;

/** Reads a file's entries from `pos` to its current end; keeps an unterminated last line for later. */
class EntryReader {
  private rest = "";
  constructor(
    private fh: FileHandle,
    private pos = 0,
  ) {}

  async *read(): AsyncGenerator<CriEntry> {
    const buf = Buffer.alloc(CHUNK);
    for (;;) {
      const { bytesRead } = await this.fh.read(buf, 0, CHUNK, this.pos);
      if (bytesRead === 0) return;
      this.pos += bytesRead;
      // Entries are ASCII-prefixed and UTF-8 text never contains a 0x0a byte inside a character,
      // so splitting the bytes at newlines never cuts a character.
      const text = this.rest + buf.subarray(0, bytesRead).toString("latin1");
      const lines = text.split("\n");
      this.rest = lines.pop() ?? "";
      for (const l of lines) {
        const e = parseCriEntry(Buffer.from(l, "latin1").toString("utf8"));
        if (e) yield e;
      }
    }
  }

  async identity(): Promise<number> {
    return (await this.fh.stat()).ino;
  }

  close(): Promise<void> {
    return this.fh.close();
  }
}

/**
 * Writes a container run's log to `sink` as the kubelet does: entries of the selected streams, not
 * older than `sinceNanos`, the last `tailLines` of them, each with its timestamp when asked, cut at
 * `limitBytes`. With `follow` it then waits for new entries (polling, also across a rotation)
 * until the run's log is complete, `signal` aborts, or the limit is reached. Memory: one read
 * chunk, plus the `tailLines` entries kept (bounded by the file size cap).
 */
export async function streamLogs(
  src: LogSource,
  q: LogQuery,
  sink: LogSink,
  signal: AbortSignal,
): Promise<void> {
  let budget = q.limitBytes ?? Infinity;
  const wanted = (e: CriEntry) =>
    q.streams.includes(e.stream) && (q.sinceNanos === undefined || timeNanos(e.ts) >= q.sinceNanos);
  /** False once the byte limit is reached. */
  const emit = async (e: CriEntry): Promise<boolean> => {
    if (signal.aborted) return false;
    let text = `${q.timestamps ? `${e.ts} ` : ""}${e.content}${e.partial ? "" : "\n"}`;
    const bytes = Buffer.byteLength(text);
    if (bytes > budget) text = Buffer.from(text).subarray(0, budget).toString("utf8");
    budget -= Math.min(bytes, budget);
    await sink(text);
    return budget > 0;
  };

  const tail: CriEntry[] = [];
  const collect = async (e: CriEntry): Promise<boolean> => {
    if (!wanted(e)) return true;
    if (q.tailLines === undefined) return emit(e);
    tail.push(e);
    if (tail.length > q.tailLines) tail.shift();
    return true;
  };

  // The rotated older part first, then the current file (kept open to follow it).
  const rotated = `${src.file}.1`;
  if (existsSync(rotated)) {
    const old = new EntryReader(await open(rotated, "r"));
    try {
      for await (const e of old.read()) if (!(await collect(e))) return;
    } finally {
      await old.close();
    }
  }
  if (!existsSync(src.file)) {
    await flushTail();
    return;
  }
  let cur = new EntryReader(await open(src.file, "r"));
  try {
    for await (const e of cur.read()) if (!(await collect(e))) return;
    if (!(await flushTail()) || !q.follow) return;
    for (;;) {
      // Live decided before the read: a run that ended has written everything by then.
      const live = src.live();
      for await (const e of cur.read()) if (wanted(e) && !(await emit(e))) return;
      const now = await stat(src.file).catch(() => undefined);
      if (now && now.ino !== (await cur.identity())) {
        // Rotated: the open file is complete (read above); go on with the new one from its start.
        await cur.close();
        cur = new EntryReader(await open(src.file, "r"));
        continue;
      }
      if (!live || signal.aborted) return;
      await new Promise((r) => setTimeout(r, POLL_MS));
    }
  } finally {
    await cur.close();
  }

  async function flushTail(): Promise<boolean> {
    for (const e of tail.splice(0)) if (!(await emit(e))) return false;
    return true;
  }
}
