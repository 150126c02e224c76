import {
  JetStreamApiCodes,
  JetStreamApiError,
  StorageType,
  type JetStreamClient,
} from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";
import type { Logger } from "./logger";

/**
 * The leader election's lock store (see leader.ts for the election and its guarantees): the
 * interface the election needs, and its NATS JetStream KV implementation. Apart from the election
 * so the bucket's setup (its max age, never lowered) reads on its own and unit tests can swap in a
 * memory lock without pulling in the loop.
 */

const LEADER_KEY = "leader";
const NS_PER_MS = 1_000_000; // JetStream durations are nanoseconds.

/** The lock's store: what the election needs from the KV bucket, so unit tests can swap it. */
export interface LeaderLock {
  /** Writes `value` if the key is absent (or deleted); rejects with `LockConflict` otherwise. */
  create(value: string): Promise<number>;
  /** Writes `value` if `revision` is still the key's last; rejects with `LockConflict` otherwise. */
  update(value: string, revision: number): Promise<number>;
  /** The key's current holder, if any. */
  read(): Promise<{ value: string; revision: number } | undefined>;
  /** Deletes the key if `revision` is still its last. */
  release(revision: number): Promise<void>;
}

/** The key changed under a compare-and-set: someone else wrote it (or a late write of ours). */
export class LockConflict extends Error {
  override readonly name = "LockConflict";
  constructor(cause: unknown) {
    super("the leader key changed", { cause });
  }
}

/** Times a contender re-reads the bucket's max age after raising it before giving up. */
const RAISE_ATTEMPTS = 3;

/**
 * The KV bucket as a lock. File storage: a NATS restart keeps the key, so it cannot vanish under a
 * live leader. A new bucket gets `ttlMs` as its max age (and nats-server makes its duplicate window
 * no longer); an existing one keeps its max age unless `ttlMs` is longer, which raises it (the
 * header says why it is never lowered). Rejects when the max age is still below `ttlMs` after
 * raising it (something keeps lowering it): contending then would be unsafe; start() is retried.
 */
export async function openKvLock(
  o: { js: JetStreamClient; bucket: string; ttlMs: number },
  log: Logger,
): Promise<LeaderLock> {
  const kv = await new Kvm(o.js).create(o.bucket, {
    history: 1,
    ttl: o.ttlMs,
    storage: StorageType.File,
  });
  const jsm = await o.js.jetstreamManager();
  const stream = `KV_${o.bucket}`;
  const want = o.ttlMs * NS_PER_MS;
  let { config } = await jsm.streams.info(stream);
  // A max age of 0 never expires the key: safe at any ttl (a dead leader's key stays, though).
  for (let i = 0; config.max_age !== 0 && config.max_age < want; i++) {
    if (i === RAISE_ATTEMPTS) {
      throw new Error(
        `the leader bucket ${o.bucket}'s max age stays at ${config.max_age / NS_PER_MS} ms, below this contender's ttl of ${o.ttlMs} ms`,
      );
    }
    const duplicate_window = Math.min(config.duplicate_window || want, want);
    await jsm.streams.update(stream, { ...config, max_age: want, duplicate_window });
    log.info(
      { bucket: o.bucket, ttlMs: o.ttlMs, wasMs: config.max_age / NS_PER_MS },
      "leader lock TTL raised",
    );
    // Re-read: another contender raising at the same time to a lower value may have landed last.
    ({ config } = await jsm.streams.info(stream));
  }
  if (config.max_age === 0) {
    log.warn({ bucket: o.bucket }, "the leader bucket has no max age: a dead leader's key stays");
  } else if (config.max_age > want) {
    log.info(
      { bucket: o.bucket, ttlMs: o.ttlMs, maxAgeMs: config.max_age / NS_PER_MS },
      "the leader bucket's max age is above this contender's ttl and is kept: a takeover after a failure waits for it",
    );
  }
  const cas = async (write: Promise<number>): Promise<number> => {
    try {
      return await write;
    } catch (err) {
      throw isConflict(err) ? new LockConflict(err) : err;
    }
  };
  return {
    create: (value) => cas(kv.create(LEADER_KEY, value)),
    update: (value, revision) => cas(kv.update(LEADER_KEY, value, revision)),
    async read() {
      const e = await kv.get(LEADER_KEY);
      if (!e || e.operation !== "PUT") return undefined;
      return { value: e.string(), revision: e.revision };
    },
    async release(revision) {
      await kv.delete(LEADER_KEY, { previousSeq: revision });
    },
  };
}

function isConflict(err: unknown): boolean {
  return (
    err instanceof JetStreamApiError &&
    (err.code === JetStreamApiCodes.StreamWrongLastSequence ||
      err.code === JetStreamApiCodes.StreamWrongLastSequenceUnknown)
  );
}
