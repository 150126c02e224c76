/**
 * Content-addressed blobs in the JetStream Object Store (`@fizz/kit/archive-store`): code files and
 * canonical archives in ARCHIVE_BUCKET, each named by the sha256 of its bytes.
 *
 * The object layout is nats.js' own (chunks on `$O.<bucket>.C.<nuid>`, one metadata message on
 * `$O.<bucket>.M.<base64url(name)>`), so `nats object` tools and @nats-io/obj still read it, but
 * both directions are done here: the library's get() feeds a ReadableStream from a push
 * consumer that ignores the reader's pace (a 100 MiB object read slowly cost ~120 MiB of RSS),
 * and its put() must know the name, i.e. the digest, before the first byte.
 */
import { createHash, randomBytes } from "node:crypto";
import { createReadStream } from "node:fs";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import {
  jetstream,
  JsHeaders,
  StorageType,
  type JetStreamClient,
  type JetStreamManager,
  type PubAck,
} from "@nats-io/jetstream";
import { headers } from "@nats-io/transport-node";
import { Objm, type ObjectInfo, type ObjectStore } from "@nats-io/obj";
import { ARCHIVE_BUCKET, archiveObjectName, FizzError } from "@fizz/events";
import type { NatsConnection } from "./nats";
import { metaSubjectOf, objDigest, ObjectReader, type ReaderOptions } from "./object-reader";

export interface StoredBlob {
  /** `sha256:<hex>` of the stored bytes. */
  digest: string;
  size: number;
}

export interface ArchiveStore {
  /** Stores a file (hashed first, so a blob already stored is never uploaded again). */
  putFile(path: string): Promise<StoredBlob>;
  /**
   * Streams `src` into the store while hashing it. An object already stored under the digest is
   * kept as is. With `expectedDigest`, other bytes are refused (DIGEST_MISMATCH) and nothing stays.
   */
  putStream(src: Readable, expectedDigest?: string): Promise<StoredBlob>;
  /**
   * The blob as a stream read at the consumer's pace; null when missing. The stream errors with
   * DIGEST_MISMATCH when the bytes do not hash to `digest` (checked again at the end).
   */
  get(digest: string): Promise<Readable | null>;
  /** A small blob (single-file code) in memory; PAYLOAD_TOO_LARGE above `maxBytes`. */
  getBuffer(digest: string, maxBytes: number): Promise<Buffer | null>;
  has(digest: string): Promise<boolean>;
  delete(digest: string): Promise<void>;
}

/** Chunk publishes awaiting their ack at once while uploading. */
const PUBLISH_WINDOW = 4;
const MAX_CHUNK = 128 * 1024;

export interface ArchiveStoreOptions {
  /** Replicas of the bucket's stream when this call creates it. */
  replicas?: number;
  /** How long the server keeps a paused reader's consumer; the reader recreates it later. */
  readerInactiveMs?: number;
}

export async function openArchiveStore(
  conn: JetStreamClient | NatsConnection,
  opts: ArchiveStoreOptions = {},
): Promise<ArchiveStore> {
  const js = "jetstreamManager" in conn ? conn : jetstream(conn);
  const os = await new Objm(js).create(ARCHIVE_BUCKET, {
    storage: StorageType.File,
    replicas: opts.replicas ?? 1,
  });
  // The client's connection is not in its public type; the library reads it the same way.
  const nc = "jetstreamManager" in conn ? (conn as unknown as { nc?: NatsConnection }).nc : conn;
  const maxChunk = Math.min(MAX_CHUNK, nc?.info?.max_payload ?? MAX_CHUNK);
  const readerOpts = { inactiveMs: opts.readerInactiveMs ?? 5 * 60_000 };
  return new JetStreamArchiveStore(js, await js.jetstreamManager(), os, maxChunk, readerOpts);
}

const stream = `OBJ_${ARCHIVE_BUCKET}`;
const chunkSubject = (nuid: string) => `$O.${ARCHIVE_BUCKET}.C.${nuid}`;
const metaSubject = (name: string) => metaSubjectOf(ARCHIVE_BUCKET, name);
function hexOf(digest: string): string {
  if (!/^sha256:[0-9a-f]{64}$/.test(digest)) {
    throw new FizzError("VALIDATION_FAILED", `not a sha256:<hex> digest: ${digest.slice(0, 80)}`, {
      field: "digest",
    });
  }
  return digest.slice("sha256:".length);
}

class JetStreamArchiveStore implements ArchiveStore {
  constructor(
    private readonly js: JetStreamClient,
    private readonly jsm: JetStreamManager,
    private readonly os: ObjectStore,
    private readonly maxChunk: number,
    private readonly readerOpts: ReaderOptions,
  ) {}

  private async live(digest: string): Promise<ObjectInfo | null> {
    const info = await this.os.info(`sha256-${hexOf(digest)}`);
    return info === null || info.deleted ? null : info;
  }

  async has(digest: string): Promise<boolean> {
    return (await this.live(digest)) !== null;
  }

  async delete(digest: string): Promise<void> {
    if (await this.has(digest)) await this.os.delete(archiveObjectName(digest));
  }

  async putFile(path: string): Promise<StoredBlob> {
    const hash = createHash("sha256");
    let size = 0;
    await pipeline(createReadStream(path), async (src: AsyncIterable<Buffer>) => {
      for await (const chunk of src) {
        hash.update(chunk);
        size += chunk.length;
      }
    });
    const digest = `sha256:${hash.digest("hex")}`;
    if (await this.has(digest)) return { digest, size };
    return this.putStream(createReadStream(path), digest);
  }

  async putStream(src: Readable, expectedDigest?: string): Promise<StoredBlob> {
    if (expectedDigest !== undefined) hexOf(expectedDigest); // refuse a malformed digest up front
    const nuid = randomBytes(12).toString("hex");
    const subject = chunkSubject(nuid);
    const maxChunk = this.maxChunk;
    const hash = createHash("sha256");
    const inFlight: Promise<PubAck>[] = [];
    let size = 0;
    let chunks = 0;
    let pending: Buffer[] = [];
    let pendingBytes = 0;
    const publish = async (payload: Buffer) => {
      hash.update(payload);
      size += payload.length;
      chunks += 1;
      inFlight.push(this.js.publish(subject, payload));
      // Bounded: the source is not read again until the oldest publishes are acknowledged.
      if (inFlight.length >= PUBLISH_WINDOW) await inFlight.shift();
    };
    try {
      for await (const data of src as AsyncIterable<Buffer | string>) {
        let buf = typeof data === "string" ? Buffer.from(data) : data;
        while (pendingBytes + buf.length >= maxChunk) {
          const take = maxChunk - pendingBytes;
          await publish(Buffer.concat([...pending, buf.subarray(0, take)]));
          buf = buf.subarray(take);
          pending = [];
          pendingBytes = 0;
        }
        if (buf.length > 0) {
          pending.push(buf);
          pendingBytes += buf.length;
        }
      }
      if (pendingBytes > 0) await publish(Buffer.concat(pending));
      await Promise.all(inFlight.splice(0));
      const sha = hash.digest();
      const digest = `sha256:${sha.toString("hex")}`;
      if (expectedDigest !== undefined && digest !== expectedDigest) {
        throw new FizzError(
          "DIGEST_MISMATCH",
          `uploaded bytes hash to ${digest}, not ${expectedDigest}`,
        );
      }
      const stored = await this.commit(digest, sha, nuid, size, chunks, maxChunk);
      if (!stored) await this.purge(subject);
      return { digest, size };
    } catch (err) {
      await Promise.allSettled(inFlight);
      await this.purge(subject);
      throw err;
    }
  }

  /**
   * Publishes the metadata that makes the chunks an object, unless the digest is already stored.
   * The expected last sequence on the name's subject makes two concurrent uploads of one digest
   * safe: the loser sees the winner's object and drops its own chunks.
   */
  private async commit(
    digest: string,
    sha: Buffer,
    nuid: string,
    size: number,
    chunks: number,
    maxChunk: number,
  ): Promise<boolean> {
    const name = archiveObjectName(digest);
    for (let attempt = 0; ; attempt += 1) {
      const current = await this.os.info(name);
      if (current !== null && !current.deleted) return false;
      const meta = {
        name,
        description: "",
        options: { max_chunk_size: maxChunk },
        bucket: ARCHIVE_BUCKET,
        nuid,
        size,
        chunks,
        mtime: new Date().toISOString(),
        digest: objDigest(sha),
        deleted: false,
      };
      const h = headers();
      h.set(JsHeaders.RollupHdr, JsHeaders.RollupValueSubject);
      try {
        await this.js.publish(metaSubject(name), JSON.stringify(meta), {
          headers: h,
          expect: { lastSubjectSequence: current?.revision ?? 0 },
        });
        // A deleted object's chunks were purged with it; nothing else to clean.
        return true;
      } catch (err) {
        if (attempt >= 3 || !/wrong last sequence/i.test(String(err))) throw err;
      }
    }
  }

  private async purge(subject: string): Promise<void> {
    await this.jsm.streams.purge(stream, { filter: subject }).catch(() => undefined);
  }

  async get(digest: string): Promise<Readable | null> {
    const info = await this.live(digest);
    if (info === null) return null;
    return this.reader(info, digest);
  }

  private reader(info: ObjectInfo, digest: string): ObjectReader {
    const subject = chunkSubject(info.nuid);
    return new ObjectReader(this.js, stream, subject, info, hexOf(digest), this.readerOpts);
  }

  async getBuffer(digest: string, maxBytes: number): Promise<Buffer | null> {
    const info = await this.live(digest);
    if (info === null) return null;
    if (info.size > maxBytes) {
      throw new FizzError(
        "PAYLOAD_TOO_LARGE",
        `${archiveObjectName(digest)} is ${info.size} bytes, over the limit of ${maxBytes}`,
      );
    }
    const parts: Buffer[] = [];
    for await (const chunk of this.reader(info, digest)) {
      parts.push(chunk as Buffer);
    }
    return Buffer.concat(parts);
  }
}
