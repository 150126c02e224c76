import {
  DeliverPolicy,
  jetstream,
  jetstreamManager,
  type Consumer,
  type JsMsg,
} from "@nats-io/jetstream";
import { Codecs, FizzError, LOG_STREAM, type LogLine } from "@fizz/events";
import type { NatsConnection } from "@fizz/kit";

/**
 * Reads one function's lines from LOG_STREAM with JetStream ordered consumers (ephemeral, no
 * acks, recreated by the client on a gap). Pulls are explicit fetches of a bounded batch, so a
 * reader that waits for a slow client stops pulling: at most one batch sits in memory.
 */
export interface LogReadOptions {
  subject: string;
  /** Only lines stored at or after this time. */
  since?: Date;
  /** Only the last N matching lines of the history (before following). */
  tail?: number;
  /** Only this instance's lines. */
  instance?: string;
  /** Keep reading new lines after the history, until the signal aborts. */
  follow: boolean;
  signal: AbortSignal;
  /** How long one pull waits for new lines when following; `idle()` is called after each empty one. */
  pollMs: number;
}

export interface LogSink {
  /** The reading consumer exists: every line stored from now on will be read. */
  ready(): void;
  /** Resolves when the line may be followed by the next one (the client took it). */
  write(line: LogLine): Promise<void>;
  /** A follow pull ended with nothing new. */
  idle(): Promise<void>;
}

const BATCH = 256;
/** A history pull that expects messages waits at most this long (messages evicted meanwhile). */
const HISTORY_WAIT_MS = 5000;
/** A consumer left behind by a registry that died is removed by the server after this. */
const INACTIVE_MS = 60_000;

export async function readLogs(
  nc: NatsConnection,
  opts: LogReadOptions,
  sink: LogSink,
): Promise<void> {
  const jsm = await jetstreamManager(nc);
  let lastSeq: number;
  try {
    lastSeq = (await jsm.streams.info(LOG_STREAM.name)).state.last_seq;
  } catch (err) {
    if (!/not found/i.test(String((err as Error).message))) throw err;
    throw new FizzError("UNAVAILABLE", `function logs are not kept yet (no ${LOG_STREAM.name})`, {
      retryable: true,
    });
  }
  const js = jetstream(nc);
  const open = (start: { seq?: number; time?: Date }, headersOnly = false): Promise<Consumer> =>
    js.consumers.get(LOG_STREAM.name, {
      // A string is `filter_subject`, which every JetStream server version takes.
      filter_subjects: opts.subject,
      inactive_threshold: INACTIVE_MS,
      ...(start.seq !== undefined
        ? { opt_start_seq: start.seq }
        : start.time !== undefined
          ? { opt_start_time: start.time.toISOString() }
          : { deliver_policy: DeliverPolicy.All }),
      ...(headersOnly ? { headers_only: true } : {}),
    });
  const matches = (line: LogLine) =>
    opts.instance === undefined || line.instanceId === opts.instance;

  let start: { seq?: number; time?: Date } = opts.since ? { time: opts.since } : {};
  if (opts.tail !== undefined) {
    const found = await tailStart(open, start, opts, lastSeq, matches);
    if (found === "none" && !opts.follow) return;
    // Nothing of the history is wanted: follow from what arrives after the snapshot.
    start = found === "none" ? { seq: lastSeq + 1 } : found === "all" ? start : { seq: found };
  }
  const consumer = await open(start);
  sink.ready();
  try {
    let pending = (await consumer.info(true)).num_pending;
    let history = true;
    while (!opts.signal.aborted) {
      if (history && !opts.follow && (pending === 0 || lastSeq === 0)) return;
      let got = 0;
      await pull(consumer, pending, opts, async (m) => {
        got++;
        pending = m.info.pending;
        if (history && (m.seq >= lastSeq || pending === 0)) history = false;
        const line = decode(m);
        if (line && matches(line)) await sink.write(line);
      });
      if (!opts.follow && (!history || got === 0)) return;
      if (got === 0 && !opts.signal.aborted) await sink.idle();
    }
  } finally {
    await consumer.delete().catch(() => undefined);
  }
}

/**
 * Where the last `tail` matching lines start: "all" when the history holds no more than that,
 * "none" when none are wanted or there are none, else their first sequence. A scan over the
 * function's subject (bounded by the stream's per-subject cap) keeps only sequence numbers; it
 * reads headers only unless lines must be filtered by instance.
 */
async function tailStart(
  open: (start: { seq?: number; time?: Date }, headersOnly?: boolean) => Promise<Consumer>,
  start: { seq?: number; time?: Date },
  opts: LogReadOptions,
  lastSeq: number,
  matches: (line: LogLine) => boolean,
): Promise<number | "all" | "none"> {
  const tail = opts.tail ?? 0;
  if (tail === 0 || lastSeq === 0) return "none";
  const filtered = opts.instance !== undefined;
  const consumer = await open(start, !filtered);
  try {
    let pending = (await consumer.info(true)).num_pending;
    if (pending === 0) return "none";
    if (pending <= tail && !filtered) return "all";
    // The last `tail` matching sequences, oldest at `seen % tail` once full.
    const ring = new Array<number>(tail);
    let seen = 0;
    let done = false;
    while (!done && !opts.signal.aborted) {
      let got = 0;
      await pull(consumer, pending, opts, (m) => {
        got++;
        pending = m.info.pending;
        if (done) return Promise.resolve();
        if (m.seq >= lastSeq || pending === 0) done = true;
        if (m.seq > lastSeq) return Promise.resolve();
        if (filtered) {
          const line = decode(m);
          if (!line || !matches(line)) return Promise.resolve();
        }
        ring[seen % tail] = m.seq;
        seen++;
        return Promise.resolve();
      });
      if (got === 0) break;
    }
    if (seen === 0) return "none";
    return ring[seen < tail ? 0 : seen % tail] ?? "none";
  } finally {
    await consumer.delete().catch(() => undefined);
  }
}

/** One fetch: just what is pending (so the history never waits), else a poll for new lines. */
async function pull(
  consumer: Consumer,
  pending: number,
  opts: LogReadOptions,
  each: (m: JsMsg) => Promise<void>,
): Promise<void> {
  const iter = await consumer.fetch(
    pending > 0
      ? { max_messages: Math.min(BATCH, pending), expires: HISTORY_WAIT_MS }
      : { max_messages: BATCH, expires: opts.pollMs },
  );
  const stop = () => iter.stop();
  opts.signal.addEventListener("abort", stop, { once: true });
  try {
    for await (const m of iter) {
      if (opts.signal.aborted) break;
      await each(m);
    }
  } finally {
    opts.signal.removeEventListener("abort", stop);
  }
}

function decode(m: JsMsg): LogLine | undefined {
  try {
    return Codecs.logs.decode(m.data).data;
  } catch {
    // Only the poolkeeper writes this stream; a line it could not have written is skipped.
    return undefined;
  }
}
