import { Redis } from "ioredis";
import {
  FizzError,
  redisKeys,
  type AnyObject,
  type HttpTrigger,
  type KindPlural,
} from "@fizz/events";
import { backoffMs, redisReady, redisTls, retryUntil, type Logger } from "@fizz/kit";
import { fnIndexEdits, functionOf, functionOfRaw, isIndexedKind } from "./function-index";
import { routeIndexEdits, routeIndexKey } from "./route-index";
import { readBatch } from "./redis-batch";
import { listIndexKey, listIndexMember } from "./store-list";
import { parseStored, pluralOf } from "./store-parse";
import type { StoreReader, Writes } from "./store-types";

/** Write conflicts on one key are short-lived; past this many tries something is hammering it. */
const MAX_ATTEMPTS = 8;

/**
 * Transactions run on a few connections side by side: WATCH state is per connection, so the
 * transactions of one connection must not interleave, and with a single connection every write
 * waited for the round trips of every write before it (writes of different objects do not
 * conflict, and those that do are caught by WATCH whichever connection they run on).
 */
const TX_LANES = 8;

/** Members per ZADD when a sorted set is replaced whole (the list index build). */
const ZADD_CHUNK = 5_000;

/** One transaction connection and the queue of transactions on it. */
interface TxLane {
  conn: Redis;
  /** Bumped when the connection closes: WATCHes do not survive a reconnect. */
  epoch: number;
  /** WATCH state is per connection, so transactions on one lane must not interleave. */
  chain: Promise<unknown>;
  /** Transactions queued or running on this lane. */
  queued: number;
}

export type TxBody<T> = (
  reader: StoreReader,
  conn: Redis,
) => Promise<{ writes: Writes; result: T }>;

export interface TxLanesOptions {
  url: string;
  prefix: string;
  name: string;
  logger: Logger;
  onRetry?: (() => void) | undefined;
  /** Throws UNAVAILABLE while the store is not connected. */
  assertReady: () => void;
  /**
   * A reader on a lane's connection that WATCHes what it reads and notes the triggers it saw, keyed
   * `seenKey(kind, ns, name)`.
   */
  reader: (conn: Redis, seen: Map<string, AnyObject | undefined>) => StoreReader;
  /** After a commit: each object written (as the JSON text stored), each removed. Must not throw. */
  onCommitted?: (
    puts: { kind: KindPlural; key: string; raw: string }[],
    removed: { kind: KindPlural; key: string }[],
  ) => void;
}

/**
 * The store's optimistic transactions: the body reads through a watching reader, decides and
 * returns its writes; they go out in MULTI/EXEC, which Redis aborts if a watched key changed, and
 * then the body runs again on fresh data (store.ts explains why that makes writers safe).
 */
export class TxLanes {
  private readonly keys: ReturnType<typeof redisKeys>;
  private readonly lanes: TxLane[];

  constructor(private readonly opts: TxLanesOptions) {
    this.keys = redisKeys(opts.prefix);
    const log = opts.logger.child({ component: "store" });
    // Fail fast instead of queueing or resending: a MULTI/EXEC replayed on a fresh connection
    // would run without the WATCHes it depends on. maxRetriesPerRequest 0: ioredis fails the
    // commands in flight on every close; with 1 it did so on every second close only, and after
    // the first it dropped them unsettled on reconnect (no resend), so the transaction, the lane's
    // queue behind it and close() hung forever.
    const { url, tls } = redisTls(opts.url);
    this.lanes = Array.from({ length: TX_LANES }, (_, i) => {
      const lane: TxLane = {
        conn: new Redis(url, {
          ...tls,
          connectionName: `${opts.name}-tx${i}`,
          enableOfflineQueue: false,
          autoResendUnfulfilledCommands: false,
          maxRetriesPerRequest: 0,
          retryStrategy: (times) => backoffMs(times, 200, 2000),
        }),
        epoch: 0,
        chain: Promise.resolve(),
        queued: 0,
      };
      lane.conn.on("close", () => lane.epoch++);
      lane.conn.on("error", (err: Error) => log.debug({ err: err.message }, "redis (tx) error"));
      return lane;
    });
  }

  ready(): boolean {
    return this.lanes.every((l) => redisReady(l.conn));
  }

  /** Runs `body` on the least busy lane until its writes commit on unchanged reads. */
  enqueue<T>(body: TxBody<T>): Promise<T> {
    const lane = this.lanes.reduce((a, b) => (b.queued < a.queued ? b : a));
    lane.queued++;
    const run = lane.chain.then(() => this.runTransaction(lane, body));
    lane.chain = run.catch(() => undefined).finally(() => lane.queued--);
    return run;
  }

  async close(): Promise<void> {
    await Promise.all(
      this.lanes.map(async (l) => {
        await l.chain;
        await l.conn.quit().catch(() => l.conn.disconnect());
      }),
    );
  }

  private async runTransaction<T>(lane: TxLane, body: TxBody<T>): Promise<T> {
    try {
      // Only a lost race (a watched key changed, or the connection's WATCHes were lost) is
      // retried, after a short back-off; any other error ends the transaction at once.
      return await retryUntil(
        async () => {
          this.opts.assertReady();
          const epoch = lane.epoch;
          let out: { writes: Writes; result: T };
          // The triggers this attempt read (watched): their old routes leave the route index, and
          // their old functions' sets the function index.
          const seen = new Map<string, AnyObject | undefined>();
          try {
            out = await body(this.opts.reader(lane.conn, seen), lane.conn);
          } catch (err) {
            await lane.conn.unwatch().catch(() => undefined);
            throw connectionLost(err, epoch !== lane.epoch || !redisReady(lane.conn));
          }
          let committed: boolean;
          try {
            committed = epoch === lane.epoch && (await this.exec(lane.conn, out.writes, seen));
          } catch (err) {
            // A read of the commit step failed (WRONGTYPE: a key of another type) with the
            // body's WATCHes and its own in force; EXEC, which would clear them, never ran. Left
            // there, the lane's next transaction aborted once for keys it never read (a WATCH
            // only adds reasons to abort, so never a wrong commit). After a failed EXEC this is
            // a no-op, and on a lost connection it fails at once (no offline queue).
            await lane.conn.unwatch().catch(() => undefined);
            throw connectionLost(err, epoch !== lane.epoch || !redisReady(lane.conn));
          }
          if (committed) return out.result;
          this.opts.onRetry?.();
          throw new WriteConflict();
        },
        {
          attempts: MAX_ATTEMPTS,
          baseMs: 5,
          maxMs: 200,
          retryable: (err) => err instanceof WriteConflict,
        },
      );
    } catch (err) {
      if (!(err instanceof WriteConflict)) throw err;
      throw new FizzError(
        "UNAVAILABLE",
        "too many concurrent writes to the same objects; try again",
        { retryable: true },
      );
    }
  }

  /** false when a watched key changed (EXEC aborted). */
  private async exec(
    tx: Redis,
    writes: Writes,
    seen: Map<string, AnyObject | undefined>,
  ): Promise<boolean> {
    const index = [
      ...(await this.routeIndexWrites(tx, writes, seen)),
      ...(await this.functionIndexWrites(tx, writes, seen)),
    ];
    const m = tx.multi();
    for (const { key, add, remove } of index) {
      if (remove !== undefined) m.srem(key, remove);
      if (add !== undefined) m.sadd(key, add);
    }
    for (const { key, members } of writes.listIndex ?? []) {
      m.del(key);
      // In chunks: spreading one argument per score and member into a single call throws
      // (call stack size) past ~100,000 objects, which would fail the start-up build forever.
      for (let i = 0; i < members.length; i += ZADD_CHUNK)
        m.zadd(key, ...members.slice(i, i + ZADD_CHUNK).flatMap((member) => [0, member]));
    }
    if (writes.marker !== undefined) m.set(writes.marker, "1");
    // The list index (store-list.ts) changes with the kind's set, in the same MULTI: a listing
    // compares their sizes to know the sorted set is whole.
    const puts: { kind: KindPlural; key: string; raw: string }[] = [];
    for (const obj of writes.put ?? []) {
      const kind = pluralOf(obj);
      const { namespace: ns, name } = obj.metadata;
      const put = { kind, key: this.keys.obj(kind, ns, name), raw: JSON.stringify(obj) };
      puts.push(put);
      m.set(put.key, put.raw);
      m.sadd(this.keys.nsIndex(kind, ns), name);
      m.sadd(this.keys.kindIndex(kind), `${ns}/${name}`);
      m.zadd(listIndexKey(this.opts.prefix, kind), 0, listIndexMember(ns, name));
    }
    const removed: { kind: KindPlural; key: string }[] = [];
    for (const { kind, namespace: ns, name } of writes.remove ?? []) {
      removed.push({ kind, key: this.keys.obj(kind, ns, name) });
      m.del(this.keys.obj(kind, ns, name));
      m.srem(this.keys.nsIndex(kind, ns), name);
      m.srem(this.keys.kindIndex(kind), `${ns}/${name}`);
      m.zrem(listIndexKey(this.opts.prefix, kind), listIndexMember(ns, name));
      if (kind === "secrets") m.del(this.keys.secretData(ns, name));
    }
    for (const d of writes.secretData ?? [])
      m.set(this.keys.secretData(d.namespace, d.name), d.sealed);
    const results = await m.exec();
    if (results === null) return false;
    const failed = results.find(([err]) => err);
    if (failed?.[0]) throw FizzError.from(failed[0]);
    if (puts.length > 0 || removed.length > 0) this.opts.onCommitted?.(puts, removed);
    return true;
  }

  /**
   * The route index follows every trigger write: the new route's set gains the trigger, the old
   * one's (when the route changed, or the trigger goes) loses it. A trigger the body did not read
   * is read here, watched like the body's reads.
   */
  private async routeIndexWrites(
    tx: Redis,
    writes: Writes,
    seen: Map<string, AnyObject | undefined>,
  ): Promise<{ key: string; add?: string; remove?: string }[]> {
    const out = [...(writes.index ?? [])];
    const before = async (ns: string, name: string): Promise<HttpTrigger | undefined> => {
      const id = seenKey("httptriggers", ns, name);
      if (seen.has(id)) return seen.get(id) as HttpTrigger | undefined;
      const key = this.keys.obj("httptriggers", ns, name);
      const [raw] = (await readBatch(tx, [key], (p) => p.get(key))) as [string | null];
      return raw === null ? undefined : parseStored("httptriggers", key, raw);
    };
    const edit = async (ns: string, name: string, after: HttpTrigger | undefined) => {
      const member = `${ns}/${name}`;
      const { add, remove } = routeIndexEdits(await before(ns, name), after);
      const key = (shape: string) => routeIndexKey(this.opts.prefix, shape);
      if (remove !== undefined) out.push({ key: key(remove), remove: member });
      if (add !== undefined) out.push({ key: key(add), add: member });
    };
    for (const obj of writes.put ?? [])
      if (obj.kind === "HttpTrigger") await edit(obj.metadata.namespace, obj.metadata.name, obj);
    for (const r of writes.remove ?? [])
      if (r.kind === "httptriggers") await edit(r.namespace, r.name, undefined);
    return out;
  }

  /**
   * The function index (function-index.ts) follows every trigger write, like the route index: the
   * trigger's old function (as stored, read leniently and watched here unless the body read it)
   * loses it when the function changed or the trigger goes; the new one gains it.
   */
  private async functionIndexWrites(
    tx: Redis,
    writes: Writes,
    seen: Map<string, AnyObject | undefined>,
  ): Promise<{ key: string; add?: string; remove?: string }[]> {
    const out: { key: string; add?: string; remove?: string }[] = [];
    const before = async (kind: KindPlural, ns: string, name: string) => {
      const id = seenKey(kind, ns, name);
      if (seen.has(id)) return functionOf(seen.get(id));
      const key = this.keys.obj(kind, ns, name);
      const [raw] = (await readBatch(tx, [key], (p) => p.get(key))) as [string | null];
      return functionOfRaw(raw);
    };
    const edit = async (kind: KindPlural, ns: string, name: string, after: string | undefined) =>
      out.push(
        ...fnIndexEdits(this.opts.prefix, kind, ns, name, await before(kind, ns, name), after),
      );
    for (const obj of writes.put ?? []) {
      const kind = pluralOf(obj);
      if (isIndexedKind(kind))
        await edit(kind, obj.metadata.namespace, obj.metadata.name, functionOf(obj));
    }
    for (const r of writes.remove ?? [])
      if (isIndexedKind(r.kind)) await edit(r.kind, r.namespace, r.name, undefined);
    return out;
  }
}

/** The key of a trigger in a transaction's `seen` map. */
export function seenKey(kind: KindPlural, ns: string, name: string): string {
  return `${kind}:${ns}/${name}`;
}

/**
 * A command failed because the lane's connection closed under it: UNAVAILABLE, so the client may
 * try again, rather than an INTERNAL error. Errors the body decided (FizzErrors) stay as they are.
 * An EXEC in flight may or may not have committed; a retried create or revisioned patch then
 * says so (ALREADY_EXISTS, REVISION_CONFLICT).
 */
function connectionLost(err: unknown, closed: boolean): unknown {
  if (!closed || err instanceof FizzError) return err;
  return new FizzError(
    "UNAVAILABLE",
    "the store's connection was lost during the write (it may or may not have been applied); try again",
    { retryable: true, cause: err },
  );
}

/** A transaction lost its optimistic race: retried by runTransaction, never seen by callers. */
class WriteConflict extends Error {
  override readonly name = "WriteConflict";
}
