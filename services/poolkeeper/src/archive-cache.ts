import { createHash, randomBytes } from "node:crypto";
import { createReadStream, createWriteStream, linkSync } from "node:fs";
import { chmod, mkdir, rename, rm } from "node:fs/promises";
import path from "node:path";
import { Transform, type Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { FizzError } from "@fizz/events";
import type { Logger } from "@fizz/kit";
import { extractTree, linkTree, type PackageTree } from "./package-tree";
import type { BlobStore } from "./specialize-source";

export interface ArchiveCacheOptions {
  /** A private (0700) directory; emptied at start: entries are only trusted once written here. */
  dir: string;
  /** Total bytes kept, least recently used out first; 0 disables the cache. */
  maxBytes: number;
  /** Bigger archives are streamed from the store every time. */
  maxEntryBytes: number;
  logger?: Logger;
}

export const DEFAULT_ARCHIVE_CACHE_BYTES = 1024 * 1024 * 1024;
export const DEFAULT_ARCHIVE_ENTRY_BYTES = 256 * 1024 * 1024;

const DIGEST = /^sha256:([0-9a-f]{64})$/;

/**
 * Package archives on local disk, by digest, in front of the Object Store. Streaming a 6 MB Go
 * deployment out of JetStream for every specialization cost ~110 ms of a warm-pool cold start; a
 * local file streams in a few. Content-addressed, so an entry never goes stale. An entry is written
 * only after the store's bytes hashed to the digest (temp file, then rename), and is hashed again
 * on every read: a file changed on disk fails that read (its last bytes are withheld, so the
 * instance never gets a complete body) and is dropped, so the next specialization reads the store.
 */
export class ArchiveCache implements BlobStore {
  /** digest → size; Map order is recency (re-inserted on use). */
  private readonly entries = new Map<string, number>();
  private readonly downloads = new Map<string, Promise<boolean>>();
  /** digest → its extracted tree (package-tree.ts), once asked for; undefined: cannot be one. */
  private readonly trees = new Map<string, Promise<PackageTree | undefined>>();
  /** The settled ones: false, not a tree. */
  private readonly extracted = new Map<string, PackageTree | false>();
  private bytes = 0;
  private seq = 0;
  private ready: Promise<void> | undefined;

  constructor(
    private readonly inner: BlobStore,
    private readonly opts: ArchiveCacheOptions,
  ) {}

  get enabled(): boolean {
    return this.opts.maxBytes > 0;
  }

  get size(): { entries: number; bytes: number } {
    return { entries: this.entries.size, bytes: this.bytes };
  }

  getBuffer(digest: string, maxBytes: number): Promise<Buffer | null> {
    return this.inner.getBuffer(digest, maxBytes);
  }

  async has(digest: string): Promise<boolean> {
    return this.entries.has(digest) || this.inner.has(digest);
  }

  async get(digest: string): Promise<Readable | null> {
    if (!this.enabled || !DIGEST.test(digest)) return this.inner.get(digest);
    if (!this.entries.has(digest)) {
      let flight = this.downloads.get(digest);
      if (!flight) {
        flight = this.download(digest).finally(() => this.downloads.delete(digest));
        this.downloads.set(digest, flight);
      }
      // Not cacheable (missing, too big, a store error, bytes that are not the digest): the store
      // is read as before, so its own answer (null, DIGEST_MISMATCH) is what the caller sees.
      if (!(await flight)) return this.inner.get(digest);
    }
    const size = this.entries.get(digest);
    if (size === undefined) return this.inner.get(digest);
    this.entries.delete(digest);
    this.entries.set(digest, size);
    return this.verified(digest);
  }

  /**
   * Makes the cached archive appear in an instance's own directory under a fresh name, a hard link
   * to the entry (no copy, no read here), and returns that name; undefined when it cannot (not
   * cacheable, another filesystem), and the caller streams it as before. The entry is root's and
   * read-only (0444), so the instance's uid can read it through the link but not change it, and
   * its 0700 directory keeps every other uid out. link(2) creates the name or fails: it never
   * follows, or replaces, anything planted there. Not hashed here: the runtime hashes what it
   * extracts against the digest, and a failed attempt is retried by streaming (`get`, checked).
   */
  async linkInto(digest: string, dir: string, bytes?: number): Promise<string | undefined> {
    if (!(await this.cached(digest, bytes))) return undefined;
    const name = `.fizz-archive-${randomBytes(16).toString("hex")}`;
    try {
      // Synchronous: one metadata call; through the thread pool it took ~14 ms at load 15.
      linkSync(this.file(digest), path.join(dir, name));
      return name;
    } catch (err) {
      this.opts.logger?.debug({ digest, err: (err as Error).message }, "archive not linked");
      return undefined;
    }
  }

  /**
   * The package already extracted (package-tree.ts): a fresh directory in `dir`, given to its
   * owner, of hard links to root's read-only files, extracted and checked once per digest from the
   * cached archive after hashing it again. Undefined when the archive cannot be a tree (links in
   * it, over TREE_MAX_ENTRIES entries, refused by the checks) or cannot be linked, and while the
   * one extraction runs (started by the first call, off that specialization's path: it would add
   * its ~50 ms to it): the caller then links or streams the archive, checked by the runtime.
   */
  async linkPackageInto(digest: string, dir: string, bytes?: number): Promise<string | undefined> {
    if (!(await this.cached(digest, bytes))) return undefined;
    const done = this.extracted.get(digest);
    if (done === undefined) {
      void this.extractOnce(digest).catch(() => undefined);
      return undefined;
    }
    return done ? linkTree(done, dir, this.opts.dir) : undefined;
  }

  /** Extracts the cached package (once; downloaded first if need be); true when it is a tree. */
  async extractOnce(digest: string, bytes?: number): Promise<boolean> {
    if (!(await this.cached(digest, bytes))) return false;
    let flight = this.trees.get(digest);
    if (!flight) {
      const mine: Promise<PackageTree | undefined> = this.extract(digest).then(async (tree) => {
        const size = this.entries.get(digest);
        if (this.trees.get(digest) !== mine || size === undefined) {
          // Dropped while extracting (evicted, or found changed on disk; perhaps downloaded
          // again since): never handed out or counted, and its directory (its own) goes.
          if (this.trees.get(digest) === mine) this.trees.delete(digest);
          if (tree) await rm(tree.dir, { recursive: true, force: true }).catch(() => undefined);
          return undefined;
        }
        if (tree) {
          // The extracted copy counts against the cache's bytes too.
          this.entries.set(digest, size + tree.bytes);
          this.bytes += tree.bytes;
        }
        this.extracted.set(digest, tree ?? false);
        this.evict();
        return tree;
      });
      flight = mine;
      this.trees.set(digest, flight);
    }
    const tree = await flight;
    return tree !== undefined && this.trees.get(digest) === flight;
  }

  /** The entry is on disk (downloaded now if need be) and moved to the recent end. */
  private async cached(digest: string, bytes?: number): Promise<boolean> {
    if (!this.enabled || !DIGEST.test(digest)) return false;
    // Never cached: a download here would only be thrown away, and the caller's get tries again.
    if (bytes !== undefined && bytes > this.opts.maxEntryBytes) return false;
    if (!this.entries.has(digest)) {
      let flight = this.downloads.get(digest);
      if (!flight) {
        flight = this.download(digest).finally(() => this.downloads.delete(digest));
        this.downloads.set(digest, flight);
      }
      if (!(await flight)) return false;
    }
    const size = this.entries.get(digest);
    if (size === undefined) return false;
    this.entries.delete(digest);
    this.entries.set(digest, size);
    return true;
  }

  /**
   * Hashes the entry again (root's, 0444, but a disk can fail), then extracts it into a directory
   * of its own: an extraction outlived by its entry (dropped, downloaded again, extracted again)
   * must never share, or remove, the next one's. Counted by extractOnce, if still current.
   */
  private async extract(digest: string): Promise<PackageTree | undefined> {
    const dest = `${this.file(digest)}.${++this.seq}.tree`;
    try {
      const hash = createHash("sha256");
      await pipeline(createReadStream(this.file(digest), { highWaterMark: 1 << 20 }), hash);
      const actual = `sha256:${hash.digest("hex")}`;
      if (actual !== digest) {
        this.opts.logger?.error({ digest, actual }, "cached archive changed on disk; dropped");
        this.drop(digest);
        return undefined;
      }
      return await extractTree(this.file(digest), dest, this.opts.maxEntryBytes);
    } catch (err) {
      this.opts.logger?.debug({ digest, err: (err as Error).message }, "package not extracted");
      return undefined;
    }
  }

  private file(digest: string): string {
    return path.join(this.opts.dir, digest.slice("sha256:".length));
  }

  private prepare(): Promise<void> {
    this.ready ??= (async () => {
      await rm(this.opts.dir, { recursive: true, force: true });
      await mkdir(this.opts.dir, { recursive: true, mode: 0o700 });
    })();
    return this.ready;
  }

  /** One store read into a temp file, hashed on the way; renamed into place only when it matches. */
  private async download(digest: string): Promise<boolean> {
    await this.prepare();
    const tmp = path.join(this.opts.dir, `.tmp-${process.pid}-${++this.seq}`);
    try {
      const src = await this.inner.get(digest);
      if (!src) return false;
      const hash = createHash("sha256");
      let size = 0;
      const max = this.opts.maxEntryBytes;
      const count = new Transform({
        transform(chunk: Buffer, _enc, cb) {
          size += chunk.length;
          if (size > max) return cb(new Error("archive larger than a cache entry"));
          hash.update(chunk);
          cb(null, chunk);
        },
      });
      // Read-only for everyone from the start (the directory is 0700): linkInto hands it to an
      // instance's uid, which must never be able to change what other instances are given.
      await pipeline(src, count, createWriteStream(tmp, { mode: 0o444, highWaterMark: 1 << 20 }));
      if (`sha256:${hash.digest("hex")}` !== digest)
        throw new Error("store bytes are not the digest");
      // The umask narrowed the mode above (0077: 0400, root's only, and the instance's open of
      // its link fails): set it exactly.
      await chmod(tmp, 0o444);
      await rename(tmp, this.file(digest));
      this.add(digest, size);
      return true;
    } catch (err) {
      this.opts.logger?.warn({ digest, err: (err as Error).message }, "archive not cached");
      await rm(tmp, { force: true });
      return false;
    }
  }

  private add(digest: string, size: number): void {
    this.entries.set(digest, size);
    this.bytes += size;
    this.evict();
  }

  private evict(): void {
    for (const [k, v] of this.entries) {
      if (this.bytes <= this.opts.maxBytes) break;
      this.drop(k, v);
    }
  }

  private drop(digest: string, size = this.entries.get(digest)): void {
    if (size === undefined || !this.entries.delete(digest)) return;
    this.bytes -= size;
    // A stream already open on it keeps reading the unlinked file.
    void rm(this.file(digest), { force: true }).catch(() => undefined);
    // A settled tree's directory goes here; one still extracting removes its own when it ends.
    const tree = this.extracted.get(digest);
    this.extracted.delete(digest);
    this.trees.delete(digest);
    if (tree) void rm(tree.dir, { recursive: true, force: true }).catch(() => undefined);
  }

  /** The cached file, hashed as it streams; the last chunk goes out only once the hash matched. */
  private verified(digest: string): Readable {
    const hash = createHash("sha256");
    let held: Buffer | undefined;
    const check = new Transform({
      transform(chunk: Buffer, _enc, cb) {
        hash.update(chunk);
        const prev = held;
        held = chunk;
        cb(null, prev);
      },
      flush: (cb) => {
        const actual = `sha256:${hash.digest("hex")}`;
        if (actual === digest) return cb(null, held);
        this.opts.logger?.error({ digest, actual }, "cached archive changed on disk; dropped");
        this.drop(digest);
        cb(
          new FizzError(
            "DIGEST_MISMATCH",
            `archive ${digest} in the poolkeeper's cache hashes to ${actual}: corrupt, dropped, not loaded`,
            { field: "archive.digest", retryable: true },
          ),
        );
      },
    });
    const file = createReadStream(this.file(digest), { highWaterMark: 1 << 20 });
    file.on("error", (err) => {
      this.drop(digest);
      check.destroy(err);
    });
    // The POST destroys the body when it ends, however it ends: the file goes with it.
    check.on("close", () => file.destroy());
    return file.pipe(check);
  }
}
