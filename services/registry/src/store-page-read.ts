import type { Redis } from "ioredis";
import type { KindPlural } from "@fizz/events";
import type { PageCursor, PageOf } from "./store-types";

/**
 * An object's answer from its stored text, as bytes (its JSON), or undefined: unreadable. Bytes,
 * not a string: a page's texts are read with MGET's Buffer form and known-canonical ones go into
 * the answer as they came (KnownJson.jsonBytes), never becoming JS strings on the registry's heap.
 */
export type ReadStored<K extends KindPlural, T> = (
  kind: K,
  key: string,
  raw: Buffer,
) => T | undefined;

/**
 * Keys of a page's first MGET when it has a byte budget: about the budget at 32 KiB an object, at
 * most 8. Later MGETs are sized from the largest text read so far (chunkAfter): a page of small
 * objects is this MGET and one for the rest; a page of large ones reads about its budget. Objects
 * may be megabytes (a function's env vars; the REST body limit is ~10 MB), and one MGET of a whole
 * page of them put `limit` × that in Redis's output buffer and in this process at once (1,000 of
 * 1.4 MB: 1.4 GB) for a page answering a few. Sizes first (a pipelined STRLEN per key) would bound
 * each read exactly but cost Redis's one thread ~2.5× a page of small objects and the registry ~3×
 * its wall time (500 texts of 600 B, medians of 12 alternating samples: Redis CPU 0.17 → 0.44 ms);
 * 8 keys and then the rest cost Redis about one MGET (0.215 → 0.223 ms). Without sizes a chunk can
 * still overshoot where sizes on one page differ widely (a chunk sized by small texts meeting
 * large ones); the cut itself is always by the bytes actually read, so the answer keeps its budget.
 * That read is not bounded: at worst the rest of the page, as before chunks (8 texts of 1 KB then
 * 150 KB ones under 64 KiB: Redis sent 6.5 MB, 99× the budget, for a page of 10 KB; 8 small then
 * 1.4 MB ones under NATS's 512 KiB: ~500 keys, ~700 MB). A Lua STRLEN prefix would bound it but costs
 * Redis 4× an MGET of 500 small texts (245 vs 62 µs); a bound needs sizes kept with the index.
 */
const FIRST_GUESS_BYTES = 32 * 1024;
const FIRST_MAX = 8;

/** Keys of the page's next MGET: what the budget left holds at the largest text read so far. */
export function chunkAfter(left: number, budgetLeft: number, largest: number): number {
  if (left <= 0 || budgetLeft <= 0) return 0;
  return Math.max(1, Math.min(left, Math.floor(budgetLeft / Math.max(1, largest))));
}

/**
 * Reads a page's `objKeys` in order and cuts it by the bytes of its answer (`maxBytes`; without
 * one, every key in one MGET as before). The texts are read in chunks (MGET's Buffer form) sized
 * so each reply is about what the budget still holds, and reading stops once the budget is spent:
 * a page of large objects costs Redis and this process about its budget, not `limit` objects.
 * `more`: names follow the keys. The cursor (`next`) is the last object answered or passed over
 * (deleted, unreadable), so the next page resumes exactly after it.
 *
 * `sizes` keeps, per kind, the largest text the kind's last page read: it only ever shrinks the
 * next page's first MGET (never grows it), so a listing of large objects reads about what each
 * page answers (pages of one 1 MB object under a 512 KiB budget read 8 objects each without it).
 */
export async function readPage<K extends KindPlural, T>(
  client: Redis,
  objKeys: readonly string[],
  cursorAt: (i: number) => PageCursor,
  kind: K,
  more: boolean,
  maxBytes: number | undefined,
  parse: ReadStored<K, T>,
  sizes?: Map<KindPlural, number>,
): Promise<PageOf<T>> {
  const cut = new PageCut(kind, maxBytes, parse, (i) => objKeys[i]!, cursorAt);
  const count = objKeys.length;
  let at = 0;
  let largest = 0;
  let n = count;
  if (maxBytes !== undefined) {
    const hint = sizes?.get(kind);
    n = Math.min(count, firstChunk(maxBytes), hint ? chunkAfter(count, maxBytes, hint) : count);
  }
  let ended = false;
  while (n > 0 && !ended) {
    const values = await client.mgetBuffer(...objKeys.slice(at, at + n));
    for (const raw of values) {
      if (raw !== null && raw.length > largest) largest = raw.length;
      if (!cut.add(at, raw)) {
        ended = true;
        break;
      }
      at++;
    }
    n = ended ? 0 : chunkAfter(count - at, (maxBytes ?? Infinity) - cut.bytes, largest);
  }
  if (sizes && largest > 0) sizes.set(kind, largest);
  return cut.finish(more || at < count);
}

/** Keys of the first MGET of a read bounded by `maxBytes` (FIRST_GUESS_BYTES). */
export function firstChunk(maxBytes: number): number {
  return Math.max(1, Math.min(FIRST_MAX, Math.floor(maxBytes / FIRST_GUESS_BYTES)));
}

/** A page being filled up to its byte budget, one stored text at a time, in the page's order. */
class PageCut<K extends KindPlural, T> {
  readonly out: PageOf<T> = { items: [], skipped: [] };
  /** Bytes of the answer so far. */
  bytes = 0;
  /** Objects answered or passed over so far: the page ends after the `taken`th. */
  private taken = 0;

  constructor(
    private readonly kind: K,
    private readonly maxBytes: number | undefined,
    private readonly parse: ReadStored<K, T>,
    private readonly keyAt: (i: number) => string,
    private readonly cursorAt: (i: number) => PageCursor,
  ) {}

  private over(size: number): boolean {
    return this.maxBytes !== undefined && this.taken > 0 && this.bytes + size > this.maxBytes;
  }

  /** Adds the `i`th object's text (null: deleted meanwhile); false: it does not fit, page ends. */
  add(i: number, raw: Buffer | null): boolean {
    // Past the byte budget (always at least one object, so a listing always advances). Checked on
    // the stored bytes first, so an object past the budget is not parsed (nor logged if it is
    // unreadable) on this page as well as the next: cutting early is always safe.
    if (raw !== null && this.over(raw.length)) return false;
    // Deleted between the index read and this one: not listed.
    const obj = raw === null ? undefined : this.parse(this.kind, this.keyAt(i), raw);
    // Bytes as the reply carries them (UTF-8), not string length: a text of non-ASCII characters
    // is up to 3 bytes per UTF-16 unit, and a page cut by length overflowed max_payload. The
    // answer's bytes, not only the stored ones, when the answer is JSON: a text that is not
    // canonical is answered re-encoded, and stored bytes that are not UTF-8 decode to U+FFFD, 3
    // bytes each (a page of those cut by stored bytes was up to 1.5 × max_payload).
    const size = raw === null || this.maxBytes === undefined ? 0 : answerBytes(obj, raw);
    if (this.over(size)) return false;
    this.taken = i + 1;
    if (raw === null) return true;
    this.bytes += size;
    if (obj !== undefined) this.out.items.push(obj);
    else this.out.skipped.push(this.cursorAt(i));
    return true;
  }

  /** The page; `more`: objects follow the last one taken. */
  finish(more: boolean): PageOf<T> {
    if (more && this.taken > 0) this.out.next = this.cursorAt(this.taken - 1);
    return this.out;
  }
}

/** The bytes an object's answer takes in a reply: its JSON's when it is JSON, else the stored. */
function answerBytes(obj: unknown, raw: Buffer): number {
  if (Buffer.isBuffer(obj)) return obj.length;
  if (typeof obj === "string") return Buffer.byteLength(obj, "utf8");
  return raw.length;
}

/**
 * The texts of `keys`, in order, read within `maxBytes` as a page's are (firstChunk, then
 * chunkAfter, at most `chunk` keys per MGET): the first text is always read, and reading stops at
 * the first that would pass the budget. Per key: its text, null when it is gone, undefined when
 * the budget left it unread.
 */
export async function readWithin(
  client: Redis,
  keys: readonly string[],
  maxBytes: number,
  chunk: number,
): Promise<(Buffer | null | undefined)[]> {
  const out = new Array<Buffer | null | undefined>(keys.length).fill(undefined);
  let at = 0;
  let bytes = 0;
  let largest = 0;
  let n = Math.min(keys.length, firstChunk(maxBytes));
  while (n > 0) {
    const values = await client.mgetBuffer(...keys.slice(at, at + n));
    for (const raw of values) {
      const size = raw?.length ?? 0;
      if (bytes > 0 && bytes + size > maxBytes) return out;
      out[at++] = raw;
      bytes += size;
      largest = Math.max(largest, size);
    }
    n = Math.min(chunk, chunkAfter(keys.length - at, maxBytes - bytes, largest));
  }
  return out;
}
