import { expect } from "chai";
import { createHash, randomBytes } from "node:crypto";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable, Writable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { connect, headers, type NatsConnection } from "@nats-io/transport-node";
import { jetstream, jetstreamManager, JsHeaders } from "@nats-io/jetstream";
import { Objm } from "@nats-io/obj";
import { ARCHIVE_BUCKET, archiveObjectName, FizzError } from "@fizz/events";
import { openArchiveStore, type ArchiveStore } from "@fizz/kit/archive-store";
import { startNats, type TestServer } from "@fizz/testkit";

const MiB = 1024 * 1024;
const CHUNK = 128 * 1024;
const STREAM = `OBJ_${ARCHIVE_BUCKET}`;
const sha = (b: Buffer) => `sha256:${createHash("sha256").update(b).digest("hex")}`;

async function drain(r: Readable): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of r) parts.push(c as Buffer);
  return Buffer.concat(parts);
}

async function failure(r: Readable): Promise<unknown> {
  try {
    await drain(r);
  } catch (err) {
    return err;
  }
  return undefined;
}

/** A full collection first, so the baseline holds no garbage from earlier work. */
setFlagsFromString("--expose-gc");
const gc = runInNewContext("gc") as () => void;

/** Samples RSS while `fn` runs; returns the peak growth over the starting figure, in MiB. */
async function rssGrowth(fn: () => Promise<void>): Promise<number> {
  gc();
  const base = process.memoryUsage().rss;
  let peak = base;
  const timer = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss)), 10);
  try {
    await fn();
  } finally {
    clearInterval(timer);
  }
  peak = Math.max(peak, process.memoryUsage().rss);
  return (peak - base) / MiB;
}

describe("archive store (JetStream Object Store)", () => {
  let nats: TestServer;
  let nc: NatsConnection;
  let store: ArchiveStore;
  let work: string;

  before(async () => {
    nats = await startNats();
    nc = await connect({ servers: nats.url });
    store = await openArchiveStore(nc);
    work = await mkdtemp(join(tmpdir(), "fizz-store-"));
  });
  after(async () => {
    await nc?.close();
    await nats?.cleanup();
    if (work) await rm(work, { recursive: true, force: true });
  });

  const messages = async () =>
    (await (await jetstreamManager(nc)).streams.info(STREAM)).state.messages;

  it("round-trips 0 B, 1 B and one chunk + 1 byte-exact, readable by @nats-io/obj too", async () => {
    const objects = await new Objm(nc).open(ARCHIVE_BUCKET);
    for (const size of [0, 1, CHUNK + 1]) {
      const data = randomBytes(size);
      const ref = await store.putStream(Readable.from([data]));
      expect(ref).to.deep.equal({ digest: sha(data), size });
      expect(await store.has(ref.digest)).to.equal(true);
      expect((await drain((await store.get(ref.digest))!)).equals(data), `get ${size}`).to.equal(
        true,
      );
      expect((await store.getBuffer(ref.digest, size))!.equals(data), `getBuffer ${size}`).to.equal(
        true,
      );
      const viaLib = await objects.getBlob(archiveObjectName(ref.digest));
      expect(Buffer.from(viaLib!).equals(data), `@nats-io/obj ${size}`).to.equal(true);
    }
  });

  it("stores a file and does not rewrite a blob it already holds", async () => {
    const data = randomBytes(3 * CHUNK + 17);
    const path = join(work, "blob.bin");
    await writeFile(path, data);
    const ref = await store.putFile(path);
    expect(ref).to.deep.equal({ digest: sha(data), size: data.length });
    const info = await (
      await new Objm(nc).open(ARCHIVE_BUCKET)
    ).info(archiveObjectName(ref.digest));
    const before = await messages();
    expect(await store.putFile(path)).to.deep.equal(ref);
    expect(
      await store.putStream(Readable.from([data.subarray(0, 5), data.subarray(5)])),
    ).to.deep.equal(ref);
    expect(await messages(), "no chunks or metadata added").to.equal(before);
    const after = await (
      await new Objm(nc).open(ARCHIVE_BUCKET)
    ).info(archiveObjectName(ref.digest));
    expect(after!.revision).to.equal(info!.revision);
  });

  it("answers null for a missing digest, refuses a large blob in memory, and deletes", async () => {
    const missing = sha(Buffer.from("never stored"));
    expect(await store.get(missing)).to.equal(null);
    expect(await store.getBuffer(missing, 10)).to.equal(null);
    expect(await store.has(missing)).to.equal(false);
    const ref = await store.putStream(Readable.from([randomBytes(1000)]));
    const err = await store.getBuffer(ref.digest, 999).catch((e: unknown) => e);
    expect(err).to.be.instanceOf(FizzError);
    expect((err as FizzError).code).to.equal("PAYLOAD_TOO_LARGE");
    expect((err as FizzError).message).to.contain("999");
    await store.delete(ref.digest);
    expect(await store.has(ref.digest)).to.equal(false);
    expect(await store.get(ref.digest)).to.equal(null);
    await store.delete(ref.digest); // idempotent
    for (const bad of ["sha256:../../x", `sha256:${"A".repeat(64)}`, "md5:00"]) {
      const refused = await store.get(bad).catch((e: unknown) => e);
      expect((refused as FizzError).code, bad).to.equal("VALIDATION_FAILED");
    }
  });

  it("refuses bytes that do not match expectedDigest and leaves nothing stored", async () => {
    const data = randomBytes(2 * CHUNK + 5);
    const claimed = sha(Buffer.from("something else"));
    const before = await messages();
    const err = await store.putStream(Readable.from([data]), claimed).catch((e: unknown) => e);
    expect(err).to.be.instanceOf(FizzError);
    expect((err as FizzError).code).to.equal("DIGEST_MISMATCH");
    expect(await store.has(claimed)).to.equal(false);
    expect(await store.has(sha(data))).to.equal(false);
    expect(await messages(), "uploaded chunks purged").to.equal(before);
  });

  it("leaves nothing stored when the source fails midway", async () => {
    const before = await messages();
    const broken = new Readable({ read() {} });
    broken.push(randomBytes(3 * CHUNK));
    setTimeout(() => broken.destroy(new Error("client went away")), 50);
    const err = await store.putStream(broken).catch((e: unknown) => e);
    expect(String(err)).to.contain("client went away");
    expect(await messages(), "uploaded chunks purged").to.equal(before);
  });

  it("keeps one object when the same bytes are uploaded concurrently", async () => {
    const data = randomBytes(5 * CHUNK + 1);
    const before = await messages();
    const refs = await Promise.all([1, 2, 3, 4].map(() => store.putStream(Readable.from([data]))));
    for (const ref of refs) expect(ref).to.deep.equal({ digest: sha(data), size: data.length });
    expect(await messages(), "6 chunks and 1 metadata message").to.equal(before + 7);
    expect((await store.getBuffer(sha(data), data.length))!.equals(data)).to.equal(true);
  });

  it("errors the stream with DIGEST_MISMATCH when the object under the name was replaced", async () => {
    const data = randomBytes(CHUNK + 1);
    const ref = await store.putStream(Readable.from([data]));
    // An attacker with bucket access overwrites the name through the library.
    const objects = await new Objm(nc).open(ARCHIVE_BUCKET);
    await objects.putBlob({ name: archiveObjectName(ref.digest) }, randomBytes(CHUNK + 1));
    const err = await failure((await store.get(ref.digest))!);
    expect(err).to.be.instanceOf(FizzError);
    expect((err as FizzError).code).to.equal("DIGEST_MISMATCH");
    const err2 = await store.getBuffer(ref.digest, 10 * CHUNK).catch((e: unknown) => e);
    expect((err2 as FizzError).code).to.equal("DIGEST_MISMATCH");
  });

  it("errors at the end when metadata claims the digest but the chunks hold other bytes", async () => {
    const data = randomBytes(2 * CHUNK);
    const ref = await store.putStream(Readable.from([data]));
    const objects = await new Objm(nc).open(ARCHIVE_BUCKET);
    const info = await objects.info(archiveObjectName(ref.digest));
    // Raw forgery: other chunks under a new nuid, the original's metadata pointing at them.
    const js = jetstream(nc);
    const forged = randomBytes(2 * CHUNK);
    await js.publish(`$O.${ARCHIVE_BUCKET}.C.forged`, forged.subarray(0, CHUNK));
    await js.publish(`$O.${ARCHIVE_BUCKET}.C.forged`, forged.subarray(CHUNK));
    const h = headers();
    h.set(JsHeaders.RollupHdr, JsHeaders.RollupValueSubject);
    const metaSubject = `$O.${ARCHIVE_BUCKET}.M.${Buffer.from(archiveObjectName(ref.digest))
      .toString("base64")
      .replace(/\+/g, "-")
      .replace(/\//g, "_")}`;
    const meta = {
      name: info!.name,
      bucket: ARCHIVE_BUCKET,
      nuid: "forged",
      size: info!.size,
      chunks: info!.chunks,
      digest: info!.digest,
      mtime: info!.mtime,
      deleted: false,
      options: info!.options,
    };
    await js.publish(metaSubject, JSON.stringify(meta), { headers: h });
    const reader = (await store.get(ref.digest))!;
    let seen = 0;
    reader.on("data", (c: Buffer) => (seen += c.length));
    const err = await new Promise<unknown>((resolve) => {
      reader.on("error", resolve);
      reader.on("end", () => resolve(undefined));
    });
    expect(err).to.be.instanceOf(FizzError);
    expect((err as FizzError).code).to.equal("DIGEST_MISMATCH");
    expect(seen).to.equal(2 * CHUNK);
  });

  it("resumes a reader paused past its consumer's inactivity limit", async function () {
    this.timeout(60_000);
    const impatient = await openArchiveStore(nc, { readerInactiveMs: 1000 });
    const data = randomBytes(20 * CHUNK + 3);
    const ref = await impatient.putStream(Readable.from([data]));
    const parts: Buffer[] = [];
    let first = true;
    const pausing = new Writable({
      write(chunk: Buffer, _enc, done) {
        parts.push(chunk);
        // The server drops the idle consumer meanwhile; the reader must recreate it.
        if (first) setTimeout(done, 3000);
        else done();
        first = false;
      },
    });
    await pipeline((await impatient.get(ref.digest))!, pausing);
    expect(Buffer.concat(parts).equals(data)).to.equal(true);
  });

  it("streams 100 MiB in and out through a slow reader with bounded memory", async function () {
    this.timeout(300_000);
    const size = 100 * MiB;
    const hash = createHash("sha256");
    function* source() {
      for (let sent = 0; sent < size; sent += MiB) {
        const block = randomBytes(MiB);
        hash.update(block);
        yield block;
      }
    }
    let ref = { digest: "", size: 0 };
    const putGrowth = await rssGrowth(async () => {
      // One block buffered by the source, so the figure is the store's.
      ref = await store.putStream(Readable.from(source(), { highWaterMark: 1 }));
    });
    expect(ref).to.deep.equal({ digest: `sha256:${hash.digest("hex")}`, size });

    const readHash = createHash("sha256");
    let got = 0;
    const getGrowth = await rssGrowth(async () => {
      const slow = new Writable({
        highWaterMark: 64 * 1024,
        write(chunk: Buffer, _enc, done) {
          readHash.update(chunk);
          got += chunk.length;
          setTimeout(done, 5);
        },
      });
      await pipeline((await store.get(ref.digest))!, slow);
    });
    expect(got).to.equal(size);
    expect(`sha256:${readHash.digest("hex")}`).to.equal(ref.digest);
    console.log(
      `      100 MiB RSS growth: put ${putGrowth.toFixed(1)} MiB, slow get ${getGrowth.toFixed(1)} MiB`,
    );
    expect(putGrowth, "put RSS growth (MiB)").to.be.below(80);
    expect(getGrowth, "slow get RSS growth (MiB)").to.be.below(80);
  });
});
