import { createHash } from "node:crypto";
import { Readable } from "node:stream";
import type { Consumer, ConsumerMessages, JetStreamClient } from "@nats-io/jetstream";
import type { ObjectInfo } from "@nats-io/obj";
import { FizzError } from "@fizz/events";

/** Chunks fetched per pull: what a slow reader can cost in memory (8 x 128 KiB). */
const FETCH_BATCH = 8;
/** A fetch that brings nothing for this long means the chunks went away under the reader. */
const FETCH_EXPIRES_MS = 10_000;
/** Fetch failures in a row (e.g. the server dropped a paused reader's consumer) before giving up. */
const FETCH_ATTEMPTS = 3;

const base64urlPadded = (b: Buffer) => b.toString("base64").replace(/\+/g, "-").replace(/\//g, "_");
/** @nats-io/obj's digest field for sha256 bytes: `SHA-256=<base64url, padded>`. */
export const objDigest = (sha: Buffer) => `SHA-256=${base64urlPadded(sha)}`;

export const metaSubjectOf = (bucket: string, name: string) =>
  `$O.${bucket}.M.${base64urlPadded(Buffer.from(name, "utf8"))}`;

export interface ReaderOptions {
  /** How long the server keeps the consumer of a reader that stopped pulling (ms). */
  inactiveMs: number;
}

/**
 * An object's bytes as a Node stream with real backpressure: chunks come through an ordered pull
 * consumer, one bounded batch per demand from the stream, never pushed ahead of the reader. At the
 * end, size and sha256 are checked against the name (hex); a mismatch errors the stream with
 * DIGEST_MISMATCH instead of ending it. The consumer is made again from the last sequence seen
 * after a long pause or a failed fetch, so a reader paused past `inactiveMs` resumes where it was.
 */
export class ObjectReader extends Readable {
  private readonly hash = createHash("sha256");
  private consumer: Consumer | undefined;
  private batch: ConsumerMessages | undefined;
  private received = 0;
  private bytes = 0;
  private failures = 0;
  /** Stream sequence to resume from when the consumer has to be made again. */
  private nextSeq = 1;
  private lastFetchAt = 0;
  private pumping = false;
  private wanted = false;
  private checked = false;
  private finished = false;

  constructor(
    private readonly js: JetStreamClient,
    private readonly stream: string,
    private readonly chunkSubject: string,
    private readonly info: ObjectInfo,
    private readonly hex: string,
    private readonly opts: ReaderOptions,
  ) {
    super();
  }

  private mismatch(why: string): FizzError {
    return new FizzError("DIGEST_MISMATCH", `sha256-${this.hex}: ${why}`);
  }

  /** Demand is remembered, so a call that lands while a batch is in flight is never lost. */
  override _read(): void {
    this.wanted = true;
    if (this.pumping) return;
    this.pumping = true;
    void this.run();
  }

  private async run(): Promise<void> {
    try {
      while (this.wanted && !this.finished && !this.destroyed) {
        this.wanted = false;
        await this.step();
      }
    } catch (err) {
      this.destroy(err instanceof Error ? err : new Error(String(err)));
    } finally {
      this.pumping = false;
    }
  }

  /** One batch pushed (wanted stays true while the stream has room), or the final check. */
  private async step(): Promise<void> {
    if (!this.checked) {
      // The metadata already names other bytes: fail before handing any out.
      if (this.info.digest !== objDigest(Buffer.from(this.hex, "hex"))) {
        throw this.mismatch(`stored as ${this.info.digest}`);
      }
      this.checked = true;
    }
    if (this.received >= this.info.chunks) {
      if (this.bytes !== this.info.size) {
        throw this.mismatch(`${this.bytes} bytes, not ${this.info.size}`);
      }
      if (this.hash.digest("hex") !== this.hex) throw this.mismatch("content does not match");
      this.finished = true;
      this.push(null);
      this.release();
      return;
    }
    let got = 0;
    let room = true;
    // After a long pause the server may have dropped the consumer: start a new one from where
    // this reader is rather than wait for the old one's fetch to time out.
    if (Date.now() - this.lastFetchAt > this.opts.inactiveMs / 2) this.release();
    try {
      this.consumer ??= await this.js.consumers.get(this.stream, {
        filter_subjects: this.chunkSubject,
        inactive_threshold: this.opts.inactiveMs,
        opt_start_seq: this.nextSeq,
      });
      const want = Math.min(FETCH_BATCH, this.info.chunks - this.received);
      this.batch = await this.consumer.fetch({ max_messages: want, expires: FETCH_EXPIRES_MS });
      for await (const m of this.batch) {
        got += 1;
        this.received += 1;
        this.nextSeq = m.seq + 1;
        this.bytes += m.data.length;
        if (this.bytes > this.info.size) throw this.mismatch("more bytes than its size");
        this.hash.update(m.data);
        // A copy: a view would pin the connection's whole read buffer.
        room = this.push(Buffer.from(m.data));
        if (this.destroyed) return;
      }
    } catch (err) {
      if (err instanceof FizzError || ++this.failures >= FETCH_ATTEMPTS) throw err;
      this.release();
      this.wanted = true;
      return;
    } finally {
      this.batch = undefined;
      this.lastFetchAt = Date.now();
    }
    if (got === 0) {
      if (++this.failures >= FETCH_ATTEMPTS) {
        throw this.mismatch(`chunks missing after ${this.bytes} bytes`);
      }
    } else {
      this.failures = 0;
    }
    this.wanted ||= room;
  }

  private release(): void {
    this.batch?.stop();
    this.batch = undefined;
    const consumer = this.consumer;
    this.consumer = undefined;
    // The server would drop the consumer after `inactiveMs` anyway.
    consumer?.delete().catch(() => undefined);
  }

  override _destroy(err: Error | null, cb: (error?: Error | null) => void): void {
    this.release();
    cb(err);
  }
}
