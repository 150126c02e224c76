import type { Msg } from "@nats-io/transport-node";
import {
  Codecs,
  KIND_PLURALS,
  Kinds,
  subjects as buildSubjects,
  type AnyObject,
  type KindPlural,
  type SkippedObject,
} from "@fizz/events";
import { settle } from "./fake-clock";

type Callback = (err: Error | null, msg: Msg) => void;
type Status = { type: string };

/**
 * NATS as kit's `followRegistryListing` (and the stores built on it) sees it, played by the test.
 * It exists because unit tests must decide when each `registry.list` is answered and when
 * reconnects happen: requests stay pending until `list`/`answer`, `registry.get` answers from
 * `objects`, `changed` publishes `registry.changed.*` events, and `reconnect` feeds every status
 * stream.
 */
export class FakeRegistryBus {
  private readonly subs = new Map<string, Set<Callback>>();
  /** One queue per status stream (every listing follows its own). */
  private readonly streams: Array<{ queue: Status[]; wake?: () => void }> = [];
  /** `registry.list` requests not answered yet, oldest first. */
  readonly lists: Array<{
    kind: KindPlural;
    answer(items: AnyObject[], skipped?: SkippedObject[]): void;
  }> = [];
  /** `registry.list` requests made so far. */
  requests = 0;
  /** What `registry.get` answers (a missing object: no answer at all, a failed get). */
  readonly objects = new Map<string, AnyObject>();

  constructor(readonly subj: ReturnType<typeof buildSubjects> = buildSubjects()) {}

  subscribe(subject: string, opts: { callback: Callback }) {
    const set = this.subs.get(subject) ?? new Set<Callback>();
    this.subs.set(subject, set);
    set.add(opts.callback);
    return { unsubscribe: () => set.delete(opts.callback) };
  }

  request(subject: string, data: Uint8Array): Promise<Msg> {
    if (subject === this.subj.registryGet) {
      const { kind, namespace, name } = Codecs.registryGet.request.decode(data).data;
      const object = this.objects.get(`${kind}/${namespace}/${name}`);
      if (!object) return Promise.reject(new Error(`no ${kind} ${namespace}/${name} in this test`));
      return Promise.resolve({
        data: Codecs.registryGet.reply.encode({ object }, "registry-test"),
      } as Msg);
    }
    if (subject !== this.subj.registryList)
      return Promise.reject(new Error(`503 no responders on ${subject}`));
    const { kind } = Codecs.registryList.request.decode(data).data;
    this.requests++;
    return new Promise((resolve) =>
      this.lists.push({
        kind,
        answer: (items, skipped) =>
          resolve({
            data: Codecs.registryList.reply.encode(
              skipped ? { items, skipped } : { items },
              "registry-test",
            ),
          } as Msg),
      }),
    );
  }

  /** The connection's status stream: yields what `reconnect` adds. */
  status(): AsyncIterable<Status> {
    const stream: { queue: Status[]; wake?: () => void } = { queue: [] };
    this.streams.push(stream);
    const next = async (): Promise<IteratorResult<Status>> => {
      for (;;) {
        const st = stream.queue.shift();
        if (st) return { value: st, done: false };
        await new Promise<void>((r) => (stream.wake = r));
      }
    };
    return { [Symbol.asyncIterator]: () => ({ next }) };
  }

  /** NATS reconnected (events may have been lost meanwhile): every listing lists again. */
  async reconnect(): Promise<void> {
    for (const s of this.streams) {
      s.queue.push({ type: "reconnect" });
      s.wake?.();
    }
    await settle();
  }

  /**
   * Answers the oldest pending list of `kind` (naming `skipped`: objects the registry could not
   * read and left out), then lets the listener apply it.
   */
  async list(kind: KindPlural, items: AnyObject[], skipped?: SkippedObject[]): Promise<void> {
    await settle();
    const i = this.lists.findIndex((l) => l.kind === kind);
    if (i < 0) throw new Error(`no ${kind} list pending`);
    this.lists.splice(i, 1)[0]!.answer(items, skipped);
    await settle();
  }

  /** Answers the oldest pending list, whatever its kind. */
  async answer(items: AnyObject[] = [], skipped?: SkippedObject[]): Promise<void> {
    await settle();
    const l = this.lists.shift();
    if (!l) throw new Error("no registry.list pending");
    l.answer(items, skipped);
    await settle();
  }

  /** A `registry.changed.<kind>` event for a created object, delivered to the subscribers. */
  async created(object: AnyObject): Promise<void> {
    await this.changed("created", object);
  }

  /** A `registry.changed.<kind>` event, delivered to the subscribers. */
  async changed(op: "created" | "updated" | "deleted", object: AnyObject): Promise<void> {
    const kind = KIND_PLURALS.find((k) => Kinds[k] === object.kind);
    if (!kind) throw new Error(`no kind ${object.kind}`);
    const { namespace, name, revision } = object.metadata;
    const subject = this.subj.registryChanged(kind);
    const data = Codecs.registryChanged.encode(
      { kind, op, namespace, name, revision, object },
      "registry-test",
    );
    for (const cb of this.subs.get(subject) ?? []) cb(null, { subject, data } as Msg);
    await settle();
  }
}
