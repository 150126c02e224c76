import { expect } from "chai";
import { Codecs, subjects as buildSubjects, type WatchTrigger } from "@fizz/events";
import { silentLogger, type Msg, type NatsConnection } from "@fizz/kit";
import { settle } from "@fizz/testkit";
import { syncTriggers } from "../src/trigger-sync";
import { watchTrigger } from "./fixtures";

const subj = buildSubjects();
type Callback = (err: Error | null, msg: Msg) => void;

/** NATS played by the test: it answers registry.list when it chooses and reports reconnects. */
class FakeNats {
  private readonly subs = new Map<string, Set<Callback>>();
  readonly lists: Array<(items: WatchTrigger[]) => void> = [];
  private readonly statuses: Array<{ type: string }> = [];
  private wake: (() => void) | undefined;

  subscribe(subject: string, opts: { callback: Callback }) {
    const set = this.subs.get(subject) ?? new Set<Callback>();
    this.subs.set(subject, set);
    set.add(opts.callback);
    return { unsubscribe: () => set.delete(opts.callback) };
  }

  request(subject: string): Promise<Msg> {
    expect(subject).to.equal(subj.registryList);
    return new Promise((resolve) =>
      this.lists.push((items) =>
        resolve({ data: Codecs.registryList.reply.encode({ items }, "registry-test") } as Msg),
      ),
    );
  }

  status(): AsyncIterable<{ type: string }> {
    const next = async (): Promise<IteratorResult<{ type: string }>> => {
      for (;;) {
        const st = this.statuses.shift();
        if (st) return { value: st, done: false };
        await new Promise<void>((r) => (this.wake = r));
      }
    };
    return { [Symbol.asyncIterator]: () => ({ next }) };
  }

  async reconnect(): Promise<void> {
    this.statuses.push({ type: "reconnect" });
    this.wake?.();
    await settle();
  }

  async list(items: WatchTrigger[]): Promise<void> {
    await settle();
    const answer = this.lists.shift();
    if (!answer) throw new Error("no registry.list pending");
    answer(items);
    await settle();
  }

  async changed(op: "created" | "updated" | "deleted", object: WatchTrigger): Promise<void> {
    const { namespace, name, revision } = object.metadata;
    const subject = subj.registryChanged("watchtriggers");
    const data = Codecs.registryChanged.encode(
      { kind: "watchtriggers", op, namespace, name, revision, object },
      "registry-test",
    );
    for (const cb of this.subs.get(subject) ?? []) cb(null, { subject, data } as Msg);
    await settle();
  }
}

/**
 * The relist after a NATS reconnect crossing change events (kit's ListingWindow): an event during
 * the relist wins over it, and a trigger it lacks that no event touched is removed.
 */
describe("kubewatcher trigger sync relists (unit)", () => {
  let abort: AbortController;
  let nats: FakeNats;
  let known: Map<string, string>;
  let sync: ReturnType<typeof syncTriggers>;
  const pods = (name: string) => watchTrigger("default", name, { resource: "pods" });

  beforeEach(() => {
    abort = new AbortController();
    nats = new FakeNats();
    known = new Map();
    sync = syncTriggers({
      nc: nats as unknown as NatsConnection,
      subjects: subj,
      sink: {
        upsert: (t) => known.set(t.metadata.name, t.metadata.uid),
        remove: (_ns, name) => known.delete(name),
      },
      sender: "kubewatcher-test",
      logger: silentLogger(),
      signal: abort.signal,
    });
  });
  afterEach(() => {
    abort.abort();
    sync.subscription.unsubscribe();
  });

  it("keeps a trigger re-created during the relist, and removes one deleted while disconnected", async () => {
    const a = pods("a");
    const gone = pods("gone");
    await nats.list([a, gone]);
    await sync.synced;
    expect(sync.count()).to.equal(2);

    await nats.reconnect();
    const a2 = pods("a"); // deleted and created again: a new uid
    await nats.changed("deleted", a);
    await nats.changed("created", a2);
    await nats.list([a]); // taken before: the old incarnation, and `gone` already deleted
    expect(Object.fromEntries(known)).to.deep.equal({ a: a2.metadata.uid });
  });

  it("does not bring back a trigger deleted during the relist, nor drop one created during it", async () => {
    const a = pods("a");
    await nats.list([a]);
    await sync.synced;
    await nats.reconnect();
    const fresh = pods("fresh");
    await nats.changed("deleted", a);
    await nats.changed("created", fresh);
    await nats.list([a]);
    expect(Object.fromEntries(known)).to.deep.equal({ fresh: fresh.metadata.uid });
  });
});
