import {
  Codecs,
  FizzError,
  type AnyObject,
  type GatewaySyncRequest,
  type MessageQueueTrigger,
  type RegistryChanged,
  type Subjects,
} from "@fizz/events";
import {
  backoffMs,
  followRegistryListing,
  listen,
  ListingWindow,
  request,
  type Logger,
  type Named,
  type NatsConnection,
  type Subscription,
} from "@fizz/kit";
import type { MqtRunner } from "./mqt/common";

/**
 * The message-queue triggers this gateway runs (subscriptions and JetStream consumers), kept like
 * the route table: a full `registry.list` at start and after every NATS reconnect (kit's
 * `followRegistryListing`), and `registry.changed.mqtriggers` events in between. Every change goes
 * through one queue, so a trigger is never subscribed twice or (un)subscribed out of order. A list
 * does not hold the queue: changes are applied as they come, a list in flight or not, and merge
 * with it through kit's `ListingWindow` (a change that crosses the list wins over it; a trigger the
 * list lacks that no change touched was deleted while events were lost, and stops). A newer
 * revision of the same object wins, as for routes.
 *
 * The update barrier asks about mq trigger writes too (`gateway.sync`): `sync` answers applied
 * only once the trigger's subscription is registered with the server (or its consumer exists) —
 * or is gone, for a delete — so a message published after `fizz mqt create` returned is not missed.
 * A trigger that cannot start (JetStream down, a stream whose subjects overlap) is retried with
 * back-off until it starts or changes.
 */
export interface MqTriggerStoreOptions {
  nc: NatsConnection;
  subjects: Subjects;
  sender: string;
  logger: Logger;
  start: (t: MessageQueueTrigger) => Promise<MqtRunner>;
  /** The trigger was deleted: remove what outlives runners (its durable consumer). */
  remove: (t: MessageQueueTrigger) => Promise<void>;
  drainMs: number;
  listTimeoutMs?: number;
}

interface Entry {
  trigger: MessageQueueTrigger;
  runner: MqtRunner | undefined;
  retry: NodeJS.Timeout | undefined;
  failures: number;
}

export class MqTriggerStore {
  private readonly entries = new Map<string, Entry>();
  private chain: Promise<unknown> = Promise.resolve();
  private subs: Subscription[] = [];
  private loaded = false;
  /** Resolves once the first list is applied (or at stop). */
  private readonly firstLoad: Promise<void>;
  private firstLoaded!: () => void;
  /** The changes that cross a list in flight (touched when they arrive, before they queue). */
  private readonly window = new ListingWindow();
  private stopped = false;
  private readonly log: Logger;
  /** Runners of changed or deleted triggers finishing their calls (awaited at stop). */
  private readonly retiring = new Set<Promise<void>>();

  constructor(private readonly o: MqTriggerStoreOptions) {
    this.log = o.logger.child({ component: "mq-triggers" });
    this.firstLoad = new Promise((resolve) => (this.firstLoaded = resolve));
  }

  /** Triggers running now (for tests and metrics). */
  get running(): number {
    let n = 0;
    for (const e of this.entries.values()) if (e.runner) n++;
    return n;
  }

  start(signal: AbortSignal): Promise<void> {
    this.subs.push(
      listen(
        this.o.nc,
        this.o.subjects.registryChanged("mqtriggers"),
        Codecs.registryChanged,
        (ev) => {
          if (ev.kind !== "mqtriggers") return;
          this.window.touch(`${ev.namespace}/${ev.name}`);
          void this.enqueue(() => this.onEvent(ev));
        },
        { logger: this.log },
      ),
    );
    let applied: Promise<void> = Promise.resolve();
    const { synced } = followRegistryListing({
      nc: this.o.nc,
      subjects: this.o.subjects,
      kind: "mqtriggers",
      sender: this.o.sender,
      logger: this.log,
      signal,
      ...(this.o.listTimeoutMs !== undefined ? { timeoutMs: this.o.listTimeoutMs } : {}),
      onAttempt: () => this.window.begin(),
      onFailure: () => this.window.abort(),
      onList: (items, { skipped }) => {
        // Merged now, against the window as it stands; applied in its turn on the queue.
        const listed = items.filter(isMqTrigger);
        const { apply, remove } = this.window.merge(listed, keyOf, this.entries.keys(), skipped);
        applied = this.enqueue(() => this.load(apply, remove, listed.length));
      },
    });
    // Resolves once the first list is applied (or the signal aborts).
    return synced.then(() => applied);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.firstLoaded();
    for (const s of this.subs) s.unsubscribe();
    this.subs = [];
    await this.chain.catch(() => undefined);
    await Promise.all(
      [...this.entries.values()].map(async (e) => {
        clearTimeout(e.retry);
        await e.runner?.stop(this.o.drainMs);
        e.runner = undefined;
      }),
    );
    await Promise.all(this.retiring);
  }

  /** `gateway.sync` for an mq trigger: true once the change named is applied here. */
  async sync(req: GatewaySyncRequest, signal: AbortSignal): Promise<boolean> {
    const { op, namespace, name, revision, uid } = req;
    const key = `${namespace}/${name}`;
    if (!this.loaded)
      await new Promise<void>((resolve) => {
        void this.firstLoad.then(resolve);
        signal.addEventListener("abort", () => resolve(), { once: true });
      });
    await this.chain.catch(() => undefined);
    if (!this.loaded) return false;
    const cur = this.entries.get(key);
    if (
      op === "deleted"
        ? cur === undefined
        : cur?.runner &&
          cur.trigger.metadata.revision >= revision &&
          // The same incarnation already running at this revision (routes.ts: why the uid).
          (uid !== undefined ? cur.trigger.metadata.uid === uid : op === "updated")
    )
      return true;
    let object: AnyObject | undefined;
    try {
      object = (
        await request(
          this.o.nc,
          this.o.subjects.registryGet,
          Codecs.registryGet,
          { kind: "mqtriggers", namespace, name },
          { sender: this.o.sender, timeoutMs: this.o.listTimeoutMs ?? 5000 },
        )
      ).object;
    } catch (err) {
      if (!(err instanceof FizzError && err.code === "NOT_FOUND")) {
        this.log.warn(
          { err: (err as Error).message, namespace, name },
          "sync: registry.get failed",
        );
        return false;
      }
    }
    if (signal.aborted) return false;
    const t = object && isMqTrigger(object) ? object : undefined;
    this.window.touch(key);
    await this.enqueue(() => (t ? this.apply(key, t) : this.remove(key, undefined)));
    const now = this.entries.get(key);
    return t === undefined ? now === undefined : now?.runner !== undefined;
  }

  private enqueue<T>(task: () => Promise<T>): Promise<T> {
    const next = this.chain.then(task, task);
    this.chain = next.catch(() => undefined);
    return next;
  }

  /**
   * Applies a merged list: runs what it holds (`apply`), stops what it lacks (`remove`: deleted
   * while not listening); triggers changed while it was in flight were left out of both.
   */
  private async load(
    apply: MessageQueueTrigger[],
    remove: string[],
    listed: number,
  ): Promise<void> {
    if (this.stopped) return;
    for (const t of apply) await this.apply(keyOf(t), t);
    for (const key of remove) await this.remove(key, undefined);
    this.loaded = true;
    this.firstLoaded();
    this.log.info({ triggers: listed, running: this.running }, "mq triggers loaded");
  }

  private async onEvent(ev: RegistryChanged): Promise<void> {
    if (ev.kind !== "mqtriggers") return;
    const key = `${ev.namespace}/${ev.name}`;
    if (ev.op === "deleted") await this.remove(key, ev.object.metadata.uid);
    else if (isMqTrigger(ev.object)) await this.apply(key, ev.object);
  }

  /** Runs `t` unless the same object at this revision (or newer) already runs. */
  private async apply(key: string, t: MessageQueueTrigger): Promise<void> {
    if (this.stopped) return;
    const cur = this.entries.get(key);
    const same = cur !== undefined && cur.trigger.metadata.uid === t.metadata.uid;
    if (same && cur.trigger.metadata.revision > t.metadata.revision) return; // stale
    if (same && cur.trigger.metadata.revision === t.metadata.revision && (cur.runner || cur.retry))
      return;
    if (cur) {
      clearTimeout(cur.retry);
      this.retire(cur.runner);
      // Another stream or subject: the old consumer would keep its messages forever.
      if (
        cur.trigger.spec.stream &&
        (cur.trigger.spec.stream !== t.spec.stream || cur.trigger.spec.subject !== t.spec.subject)
      )
        await this.o
          .remove(cur.trigger)
          .catch((err: unknown) =>
            this.log.warn({ err: (err as Error).message }, "old consumer not removed"),
          );
    }
    const e: Entry = { trigger: t, runner: undefined, retry: undefined, failures: 0 };
    this.entries.set(key, e);
    await this.run(key, e);
  }

  private async run(key: string, e: Entry): Promise<void> {
    try {
      e.runner = await this.o.start(e.trigger);
      e.failures = 0;
    } catch (err) {
      const wait = backoffMs(e.failures++, 500, 30_000);
      this.log.warn(
        { trigger: key, err: (err as Error).message, retryInMs: wait },
        "mq trigger not started; retrying",
      );
      e.retry = setTimeout(() => {
        e.retry = undefined;
        if (this.entries.get(key) === e && !this.stopped) void this.enqueue(() => this.run(key, e));
      }, wait);
      e.retry.unref();
    }
  }

  /**
   * Stops a runner without waiting for its calls: it stops taking messages at once (so the new
   * runner is the only one), and calls in flight finish meanwhile, so a barrier is not held up by
   * a long call.
   */
  private retire(runner: MqtRunner | undefined): void {
    if (!runner) return;
    const p: Promise<void> = runner
      .stop(this.o.drainMs)
      .catch((err: unknown) => this.log.warn({ err: (err as Error).message }, "runner stop failed"))
      .finally(() => this.retiring.delete(p));
    this.retiring.add(p);
  }

  /**
   * `uid` given (an event): only that object goes; a newer one under the same name stays. Not once
   * stopping: a shutdown stops runners but keeps durable consumers (a load or event still on the
   * queue at stop() must not delete them).
   */
  private async remove(key: string, uid: string | undefined): Promise<void> {
    if (this.stopped) return;
    const cur = this.entries.get(key);
    if (!cur || (uid !== undefined && cur.trigger.metadata.uid !== uid)) return;
    this.entries.delete(key);
    clearTimeout(cur.retry);
    this.retire(cur.runner);
    await this.o
      .remove(cur.trigger)
      .catch((err: unknown) =>
        this.log.warn(
          { trigger: key, err: (err as Error).message },
          "consumer of a deleted trigger not removed",
        ),
      );
  }
}

const keyOf = (t: Named) => `${t.metadata.namespace}/${t.metadata.name}`;

function isMqTrigger(o: { kind: string }): o is MessageQueueTrigger {
  return o.kind === "MessageQueueTrigger";
}
