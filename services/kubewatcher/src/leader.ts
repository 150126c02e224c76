import { sleep, type Logger } from "@fizz/kit";
import { StorageType, type JetStreamClient } from "@nats-io/jetstream";
import { Kvm, type KV } from "@nats-io/kv";

const LEADER_KEY = "leader";
const MS = 1_000_000; // JetStream durations are nanoseconds.

/**
 * One leader among the kubewatcher replicas, so each Kubernetes event is delivered by one of them.
 * The lock is the key `leader` in a KV bucket whose entries expire `ttlMs` after their last write
 * (the bucket's max age, counted by the NATS server's clock alone). A replica takes the lock with
 * create-if-absent and keeps it by updating it every ttl/4 with the revision it last wrote
 * (compare-and-set); a replica that stops renewing loses the key when it expires, and a follower,
 * polling every ttl/4, takes over. The leader steps down by itself once 80% of the TTL has passed
 * since the last renewal it *sent* that was acknowledged: the server wrote that renewal after it
 * was sent, so the key cannot expire before then and two leaders never overlap (clock rates
 * aside). A graceful stop deletes the key at once.
 */
export interface LeaderOptions {
  js: JetStreamClient;
  bucket: string;
  id: string;
  ttlMs: number;
  logger: Logger;
  onElected(): void;
  onDeposed(): void;
}

export class LeaderElection {
  private kv!: KV;
  private revision = 0;
  /** When the last acknowledged renewal was sent; leadership is valid until + 80% of the TTL. */
  private renewedAt = 0;
  private leading = false;
  private readonly log: Logger;
  private readonly abort = new AbortController();
  private loop: Promise<void> | undefined;
  private watchdog: NodeJS.Timeout | undefined;

  constructor(private readonly opts: LeaderOptions) {
    this.log = opts.logger.child({ component: "leader" });
  }

  async start(): Promise<void> {
    this.kv = await new Kvm(this.opts.js).create(this.opts.bucket, {
      history: 1,
      ttl: this.opts.ttlMs,
      // File storage: a NATS restart keeps the lock, so it cannot vanish under a live leader.
      storage: StorageType.File,
    });
    await this.alignTtl();
    this.loop = this.run();
  }

  /** True while this replica holds an unexpired lock. */
  isLeader(): boolean {
    return this.leading && Date.now() < this.deadline();
  }

  async stop(): Promise<void> {
    this.abort.abort();
    await this.loop;
    clearTimeout(this.watchdog);
    if (this.leading) {
      this.depose("stopping");
      // Only our own lock: if it changed hands meanwhile, the revision no longer matches.
      await this.kv.delete(LEADER_KEY, { previousSeq: this.revision }).catch(() => undefined);
    }
  }

  private async run(): Promise<void> {
    const signal = this.abort.signal;
    const interval = Math.max(100, Math.floor(this.opts.ttlMs / 4));
    while (!signal.aborted) {
      const sentAt = Date.now();
      try {
        if (this.leading) {
          this.revision = await this.kv.update(LEADER_KEY, this.opts.id, this.revision, interval);
          this.renewed(sentAt);
        } else {
          this.revision = await this.kv.create(LEADER_KEY, this.opts.id);
          this.leading = true;
          this.renewed(sentAt);
          this.log.info({ id: this.opts.id }, "elected leader");
          this.opts.onElected();
        }
      } catch (err) {
        if (this.leading && isConflict(err)) this.depose("another replica holds the lock");
        else if (this.leading) {
          this.log.warn({ err: (err as Error).message }, "could not renew the leader lock");
        }
      }
      await sleep(interval, signal);
    }
  }

  private renewed(sentAt: number): void {
    this.renewedAt = sentAt;
    clearTimeout(this.watchdog);
    // Steps down on time even if renewals hang (NATS away): the lock may expire at any moment after.
    this.watchdog = setTimeout(
      () => {
        if (this.leading && Date.now() >= this.deadline()) this.depose("lock not renewed in time");
      },
      Math.max(0, this.deadline() - Date.now()) + 1,
    );
    this.watchdog.unref();
  }

  private deadline(): number {
    return this.renewedAt + Math.floor(this.opts.ttlMs * 0.8);
  }

  private depose(why: string): void {
    if (!this.leading) return;
    this.leading = false;
    clearTimeout(this.watchdog);
    this.log.warn({ id: this.opts.id, why }, "no longer the leader");
    this.opts.onDeposed();
  }

  /** The bucket keeps the TTL it was created with; a changed FIZZ_KUBEWATCHER_LEADER_TTL_MS wins. */
  private async alignTtl(): Promise<void> {
    const jsm = await this.opts.js.jetstreamManager();
    const stream = `KV_${this.opts.bucket}`;
    const info = await jsm.streams.info(stream);
    if (info.config.max_age !== this.opts.ttlMs * MS) {
      await jsm.streams.update(stream, { ...info.config, max_age: this.opts.ttlMs * MS });
      this.log.info({ ttlMs: this.opts.ttlMs }, "leader lock TTL changed");
    }
  }
}

function isConflict(err: unknown): boolean {
  const e = err as { code?: unknown; message?: unknown };
  return e.code === 10071 || e.code === 10164 || /wrong last sequence/i.test(String(e.message));
}
