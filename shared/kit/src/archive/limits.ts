/** Caps on what one archive may unpack to. Sizes are counted while streaming, never taken from headers. */
export interface ArchiveLimits {
  /** Sum of every file's bytes. */
  maxTotalBytes: number;
  /** Entries of any kind (files, directories, links). */
  maxFiles: number;
  /** Total uncompressed bytes over the archive's size on disk. */
  maxRatio: number;
  /** Characters in an entry's name. */
  maxEntryNameLength: number;
  /** The ratio applies once this many bytes are out, so a small archive of text is not refused. */
  ratioGraceBytes: number;
}

export const DEFAULT_ARCHIVE_LIMITS: Readonly<ArchiveLimits> = Object.freeze({
  maxTotalBytes: 256 * 1024 * 1024,
  maxFiles: 10_000,
  maxRatio: 100,
  maxEntryNameLength: 1024,
  ratioGraceBytes: 1024 * 1024,
});

export function resolveLimits(limits: Partial<ArchiveLimits> = {}): ArchiveLimits {
  const out = { ...DEFAULT_ARCHIVE_LIMITS };
  for (const key of Object.keys(out) as (keyof ArchiveLimits)[]) {
    const value = limits[key];
    if (value !== undefined) out[key] = value;
  }
  return out;
}
