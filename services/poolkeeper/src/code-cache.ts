/**
 * Single-file code by digest, least recently used out first. Content-addressed, so an entry never
 * goes stale: the same digest is the same bytes forever. It saves the Object Store round trip on
 * the hot path (a function scaled out specializes the same code again and again). Only blobs that
 * were checked against their digest go in; big ones are not kept (they would evict many small ones).
 */
export class CodeCache {
  private readonly entries = new Map<string, Buffer>();
  private bytes = 0;

  constructor(
    readonly maxBytes = 32 * 1024 * 1024,
    readonly maxEntryBytes = 1024 * 1024,
  ) {}

  get(digest: string): Buffer | undefined {
    const hit = this.entries.get(digest);
    if (hit) {
      // Map order is insertion order: re-inserting makes it the most recently used.
      this.entries.delete(digest);
      this.entries.set(digest, hit);
    }
    return hit;
  }

  set(digest: string, code: Buffer): void {
    if (code.length > this.maxEntryBytes || this.entries.has(digest)) return;
    this.entries.set(digest, code);
    this.bytes += code.length;
    for (const [k, v] of this.entries) {
      if (this.bytes <= this.maxBytes) break;
      this.entries.delete(k);
      this.bytes -= v.length;
    }
  }

  get size(): { entries: number; bytes: number } {
    return { entries: this.entries.size, bytes: this.bytes };
  }
}
