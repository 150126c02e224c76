import {
  JetStreamApiCodes,
  JetStreamApiError,
  StorageType,
  type JetStreamClient,
  type JetStreamManager,
} from "@nats-io/jetstream";
import { Kvm, type KV } from "@nats-io/kv";

/**
 * What the kubewatcher remembers per informer key, in a NATS KV bucket (the kubewatcher writes no
 * Redis: the registry and the scheduler own it):
 * - `cursor.<keyId>`: the resourceVersion up to which every event has been delivered (published
 *   and acknowledged by JetStream), i.e. where a restarted watch resumes;
 * - `obj.<keyId>.<uid>`: each object the watch has delivered, with its resourceVersion: the
 *   snapshot a relist after 410 Gone is compared with.
 * Cursor writes carry the revision they replace (compare-and-set), so a replica that lost the
 * leadership without knowing it cannot move a cursor the new leader owns.
 */
export interface Cursor {
  resourceVersion: string;
  /** KV revision of the cursor entry, for the next compare-and-set. */
  revision: number;
}

/** Enough of an object to announce its deletion: identity, labels and last resourceVersion. */
export interface ObjectRecord {
  name: string;
  namespace?: string | undefined;
  resourceVersion: string;
  labels?: Record<string, string> | undefined;
}

/** Another replica wrote the cursor: this one is no longer (or never was) the leader. */
export class CursorConflictError extends Error {
  override readonly name = "CursorConflictError";
}

const encoder = new TextEncoder();
const SNAPSHOT_READ_BATCH = 64;

export class WatchStateStore {
  private constructor(
    private readonly kv: KV,
    private readonly jsm: JetStreamManager,
    private readonly bucket: string,
  ) {}

  static async open(js: JetStreamClient, bucket: string): Promise<WatchStateStore> {
    const kv = await new Kvm(js).create(bucket, { history: 1, storage: StorageType.File });
    return new WatchStateStore(kv, await js.jetstreamManager(), bucket);
  }

  async cursor(keyId: string): Promise<Cursor | undefined> {
    const e = await this.kv.get(`cursor.${keyId}`);
    if (!e || e.operation !== "PUT") return undefined;
    const v = e.json<{ resourceVersion?: unknown }>();
    if (typeof v.resourceVersion !== "string" || v.resourceVersion === "") return undefined;
    return { resourceVersion: v.resourceVersion, revision: e.revision };
  }

  /** The first cursor of a key; `describe` makes the entry readable for operators. */
  async createCursor(keyId: string, resourceVersion: string, describe: string): Promise<Cursor> {
    const revision = await cas(() =>
      this.kv.create(`cursor.${keyId}`, value({ resourceVersion, key: describe })),
    );
    return { resourceVersion, revision };
  }

  async advance(
    keyId: string,
    cur: Cursor,
    resourceVersion: string,
    describe: string,
  ): Promise<Cursor> {
    const revision = await cas(() =>
      this.kv.update(`cursor.${keyId}`, value({ resourceVersion, key: describe }), cur.revision),
    );
    return { resourceVersion, revision };
  }

  async putObject(keyId: string, uid: string, rec: ObjectRecord): Promise<void> {
    await this.kv.put(`obj.${keyId}.${uid}`, value(rec));
  }

  /** Removes the entry outright (no delete marker left behind to accumulate). */
  async removeObject(keyId: string, uid: string): Promise<void> {
    await this.jsm.streams.purge(this.stream, { filter: this.subject(`obj.${keyId}.${uid}`) });
  }

  async snapshot(keyId: string): Promise<Map<string, ObjectRecord>> {
    const keys: string[] = [];
    for await (const k of await this.kv.keys(`obj.${keyId}.*`)) keys.push(k);
    const out = new Map<string, ObjectRecord>();
    for (let i = 0; i < keys.length; i += SNAPSHOT_READ_BATCH) {
      const batch = keys.slice(i, i + SNAPSHOT_READ_BATCH);
      const entries = await Promise.all(batch.map((k) => this.kv.get(k)));
      entries.forEach((e, j) => {
        if (e?.operation !== "PUT") return;
        const uid = batch[j]!.slice(`obj.${keyId}.`.length);
        out.set(uid, e.json<ObjectRecord>());
      });
    }
    return out;
  }

  /** Forgets a key: its cursor and snapshot. */
  async purge(keyId: string): Promise<void> {
    await this.jsm.streams.purge(this.stream, { filter: this.subject(`obj.${keyId}.>`) });
    await this.jsm.streams.purge(this.stream, { filter: this.subject(`cursor.${keyId}`) });
  }

  /** Every key that has a cursor. */
  async keyIds(): Promise<string[]> {
    const ids: string[] = [];
    for await (const k of await this.kv.keys("cursor.*")) ids.push(k.slice("cursor.".length));
    return ids;
  }

  private get stream(): string {
    return `KV_${this.bucket}`;
  }

  private subject(key: string): string {
    return `$KV.${this.bucket}.${key}`;
  }
}

function value(v: unknown): Uint8Array {
  return encoder.encode(JSON.stringify(v));
}

async function cas(write: () => Promise<number>): Promise<number> {
  try {
    return await write();
  } catch (err) {
    if (
      err instanceof JetStreamApiError &&
      (err.code === JetStreamApiCodes.StreamWrongLastSequence ||
        err.code === JetStreamApiCodes.StreamWrongLastSequenceUnknown)
    ) {
      throw new CursorConflictError("another kubewatcher moved the cursor", { cause: err });
    }
    throw err;
  }
}
