import {
  closeSync,
  constants,
  createWriteStream,
  linkSync,
  mkdirSync,
  openSync,
  symlinkSync,
  writeSync,
} from "node:fs";
import { join } from "node:path";
import { pipeline } from "node:stream/promises";
import { Transform } from "node:stream";
import { checkSymlinkTarget, DIR_MODE, entrySegments, safeFileMode } from "./entry-check.js";
import { ArchiveError } from "./errors.js";
import type { ArchiveLimits } from "./limits.js";

type Kind = "dir" | "file" | "symlink";

/**
 * Writes entries under a fresh root, checking each one. Metadata is written synchronously in entry
 * order and what was written is remembered, so a later entry can never land on or pass through a
 * symlink; files open with O_NOFOLLOW | O_EXCL besides.
 */
export class ExtractSink {
  private readonly kinds = new Map<string, Kind>();
  private entries = 0;
  private bytes = 0;
  /** The first size refusal, kept because the parser may report the stream it broke first. */
  refusal: ArchiveError | undefined;

  constructor(
    private readonly root: string,
    private readonly limits: ArchiveLimits,
    private readonly archiveBytes: number,
  ) {}

  get files(): number {
    return this.entries;
  }

  get totalBytes(): number {
    return this.bytes;
  }

  private count(name: string): void {
    this.entries += 1;
    if (this.entries > this.limits.maxFiles) throw new ArchiveError(name, "too many files");
  }

  /** Checks the name, makes missing parents as real directories, refuses a path through a link or file. */
  private prepare(name: string): string[] {
    const segments = entrySegments(name, this.limits.maxEntryNameLength);
    for (let i = 1; i < segments.length; i += 1) {
      const rel = segments.slice(0, i).join("/");
      const kind = this.kinds.get(rel);
      if (kind === undefined) {
        mkdirSync(join(this.root, rel), { mode: DIR_MODE });
        this.kinds.set(rel, "dir");
      } else if (kind !== "dir") {
        throw new ArchiveError(name, "path passes through a symlink or file");
      }
    }
    return segments;
  }

  private claim(name: string, segments: string[], kind: Kind): string {
    const rel = segments.join("/");
    if (this.kinds.has(rel)) throw new ArchiveError(name, "duplicate entry");
    this.kinds.set(rel, kind);
    return rel;
  }

  directory(name: string): void {
    this.count(name);
    const segments = this.prepare(name);
    if (segments.length === 0) return;
    const rel = segments.join("/");
    const kind = this.kinds.get(rel);
    if (kind === "dir") return; // a directory listed twice is harmless
    this.claim(name, segments, "dir");
    mkdirSync(join(this.root, rel), { mode: DIR_MODE });
  }

  symlink(name: string, target: string): void {
    this.count(name);
    const segments = this.prepare(name);
    if (segments.length === 0) throw new ArchiveError(name, "empty or invalid name");
    checkSymlinkTarget(name, segments.length - 1, target);
    const rel = this.claim(name, segments, "symlink");
    symlinkSync(target, join(this.root, rel));
  }

  /** A hard link only to a regular file this archive already wrote. */
  hardlink(name: string, target: string): void {
    this.count(name);
    const segments = this.prepare(name);
    if (segments.length === 0) throw new ArchiveError(name, "empty or invalid name");
    let targetRel: string;
    try {
      targetRel = entrySegments(target, this.limits.maxEntryNameLength).join("/");
    } catch {
      throw new ArchiveError(name, "hard link target is not an extracted file");
    }
    if (this.kinds.get(targetRel) !== "file") {
      throw new ArchiveError(name, "hard link target is not an extracted file");
    }
    const rel = this.claim(name, segments, "file");
    linkSync(join(this.root, targetRel), join(this.root, rel));
  }

  /**
   * A small file whose data is already in memory, written synchronously. Most files of a package
   * (a node_modules tree) are a few KiB: going through a stream pipeline and the thread pool for
   * each cost milliseconds per file, which made a few thousand files take seconds.
   */
  fileBytes(name: string, mode: number | undefined, data: Buffer): void {
    this.count(name);
    const segments = this.prepare(name);
    if (segments.length === 0) throw new ArchiveError(name, "empty or invalid name");
    const rel = this.claim(name, segments, "file");
    this.add(name, data.length);
    const flags = constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW;
    const fd = openSync(join(this.root, rel), flags, safeFileMode(mode));
    try {
      let off = 0;
      while (off < data.length) off += writeSync(fd, data, off, data.length - off);
    } finally {
      closeSync(fd);
    }
  }

  /** Streams one file's data to disk, counting bytes as they pass. */
  async file(
    name: string,
    mode: number | undefined,
    data: AsyncIterable<Buffer>,
    signal?: AbortSignal,
  ): Promise<void> {
    this.count(name);
    const segments = this.prepare(name);
    if (segments.length === 0) throw new ArchiveError(name, "empty or invalid name");
    const rel = this.claim(name, segments, "file");
    const flags = constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW;
    const fd = openSync(join(this.root, rel), flags, safeFileMode(mode));
    const meter = new Transform({
      transform: (chunk: Buffer, _enc, done) => {
        try {
          this.add(name, chunk.length);
          done(null, chunk);
        } catch (err) {
          done(err as Error);
        }
      },
    });
    await pipeline(data, meter, createWriteStream("", { fd }), signal ? { signal } : {});
  }

  private add(name: string, n: number): void {
    this.bytes += n;
    if (this.bytes > this.limits.maxTotalBytes) {
      throw (this.refusal ??= new ArchiveError(name, "total size over the limit"));
    }
    if (
      this.bytes > this.limits.ratioGraceBytes &&
      this.bytes > this.limits.maxRatio * Math.max(1, this.archiveBytes)
    ) {
      throw (this.refusal ??= new ArchiveError(name, "compression ratio over the limit"));
    }
  }
}
