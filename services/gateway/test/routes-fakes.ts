import type { Msg } from "@nats-io/transport-node";
import {
  Codecs,
  subjects,
  type AnyObject,
  type FunctionObject,
  type HttpTrigger,
  type KindPlural,
  type MessageQueueTrigger,
  type SkippedObject,
} from "@fizz/events";
import { settle } from "@fizz/testkit";

/**
 * NATS as the route and mq trigger stores see it, played by the test: it answers each `registry.list` when it
 * chooses, `registry.get` from `objects`, publishes `registry.changed.*` events itself, and
 * reports reconnects.
 */
export const subj = subjects("fizz.v1");
type Callback = (err: Error | null, msg: Msg) => void;

export class FakeNats {
  private readonly subs = new Map<string, Set<Callback>>();
  /** `registry.list` requests not answered yet, oldest first. */
  readonly lists: {
    kind: KindPlural;
    answer(items: AnyObject[], skipped?: SkippedObject[]): void;
  }[] = [];

  subscribe(subject: string, opts: { callback: Callback }) {
    const set = this.subs.get(subject) ?? new Set<Callback>();
    this.subs.set(subject, set);
    set.add(opts.callback);
    return { unsubscribe: () => set.delete(opts.callback) };
  }

  request(subject: string, data: Uint8Array): Promise<Msg> {
    if (subject === subj.registryGet) {
      const { kind, namespace, name } = Codecs.registryGet.request.decode(data).data;
      const object = this.objects.get(`${kind}/${namespace}/${name}`);
      if (!object) return Promise.reject(new Error(`no ${kind} ${namespace}/${name} in this test`));
      return Promise.resolve({
        data: Codecs.registryGet.reply.encode({ object }, "registry-test"),
      } as Msg);
    }
    if (subject !== subj.registryList)
      return Promise.reject(new Error(`503 no responders on ${subject}`));
    const { kind } = Codecs.registryList.request.decode(data).data;
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

  /** What `registry.get` answers (a missing object: no answer at all, a failed get). */
  readonly objects = new Map<string, AnyObject>();
  /** One queue per status stream (every listing follows its own). */
  private readonly streams: Array<{ queue: Array<{ type: string }>; wake?: () => void }> = [];

  /** The connection's status stream: yields what `reconnect` adds. */
  status(): AsyncIterable<{ type: string }> {
    const stream: { queue: Array<{ type: string }>; wake?: () => void } = { queue: [] };
    this.streams.push(stream);
    const next = async (): Promise<IteratorResult<{ type: string }>> => {
      for (;;) {
        const st = stream.queue.shift();
        if (st) return { value: st, done: false };
        await new Promise<void>((r) => (stream.wake = r));
      }
    };
    return { [Symbol.asyncIterator]: () => ({ next }) };
  }

  /** NATS reconnected (events may have been lost meanwhile): the store lists both kinds again. */
  async reconnect(): Promise<void> {
    for (const s of this.streams) {
      s.queue.push({ type: "reconnect" });
      s.wake?.();
    }
    await settle();
  }

  /**
   * Answers the pending list of `kind` (naming `skipped`: objects the registry could not read and
   * left out), then lets the store apply it.
   */
  async list(kind: KindPlural, items: AnyObject[], skipped?: SkippedObject[]): Promise<void> {
    await settle();
    const i = this.lists.findIndex((l) => l.kind === kind);
    if (i < 0) throw new Error(`no ${kind} list pending`);
    const [l] = this.lists.splice(i, 1);
    l!.answer(items, skipped);
    await settle();
  }

  /** A `registry.changed.<kind>` event for a created object, delivered to the subscribers. */
  async created(object: FunctionObject | HttpTrigger): Promise<void> {
    await this.changed("created", object);
  }

  async changed(
    op: "created" | "updated" | "deleted",
    object: FunctionObject | HttpTrigger | MessageQueueTrigger,
  ): Promise<void> {
    const kind =
      object.kind === "Function"
        ? "functions"
        : object.kind === "HttpTrigger"
          ? "httptriggers"
          : "mqtriggers";
    const { namespace, name, revision } = object.metadata;
    const subject = subj.registryChanged(kind);
    const data = Codecs.registryChanged.encode(
      { kind, op, namespace, name, revision, object },
      "registry-test",
    );
    for (const cb of this.subs.get(subject) ?? []) cb(null, { subject, data } as Msg);
    await settle();
  }
}

export function fn(name: string): FunctionObject {
  const now = new Date(0).toISOString();
  return {
    apiVersion: "fizz.dev/v1",
    kind: "Function",
    metadata: {
      namespace: "default",
      name,
      uid: `uid-${name}`,
      revision: 1,
      labels: {},
      createdAt: now,
      updatedAt: now,
    },
    spec: {
      environment: "node",
      code: { filename: "f.js", digest: `sha256:${"0".repeat(64)}`, size: 1 },
      minInstances: 0,
      maxInstances: 10,
      timeoutSeconds: 60,
      idleTimeoutSeconds: 120,
    },
  };
}

export function trigger(name: string, path: string, target: string): HttpTrigger {
  const now = new Date(0).toISOString();
  return {
    apiVersion: "fizz.dev/v1",
    kind: "HttpTrigger",
    metadata: {
      namespace: "default",
      name,
      uid: `uid-t-${name}`,
      revision: 1,
      labels: {},
      createdAt: now,
      updatedAt: now,
    },
    spec: { methods: [], path, function: target },
  };
}
