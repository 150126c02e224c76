import { expect } from "chai";
import { subjects as buildSubjects } from "@fizz/events";
import { silentLogger, type NatsConnection } from "@fizz/kit";
import { FakeRegistryBus } from "@fizz/testkit";
import { syncTriggers } from "../src/trigger-sync";
import { watchTrigger } from "./fixtures";

const subj = buildSubjects();
/**
 * The relist after a NATS reconnect crossing change events (kit's ListingWindow): an event during
 * the relist wins over it, and a trigger it lacks that no event touched is removed.
 */
describe("kubewatcher trigger sync relists (unit)", () => {
  let abort: AbortController;
  let nats: FakeRegistryBus;
  let known: Map<string, string>;
  let sync: ReturnType<typeof syncTriggers>;
  const pods = (name: string) => watchTrigger("default", name, { resource: "pods" });

  beforeEach(() => {
    abort = new AbortController();
    nats = new FakeRegistryBus(subj);
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
    await nats.list("watchtriggers", [a, gone]);
    await sync.synced;
    expect(sync.count()).to.equal(2);

    await nats.reconnect();
    const a2 = pods("a"); // deleted and created again: a new uid
    await nats.changed("deleted", a);
    await nats.changed("created", a2);
    await nats.list("watchtriggers", [a]); // taken before: the old incarnation, and `gone` already deleted
    expect(Object.fromEntries(known)).to.deep.equal({ a: a2.metadata.uid });
  });

  it("does not bring back a trigger deleted during the relist, nor drop one created during it", async () => {
    const a = pods("a");
    await nats.list("watchtriggers", [a]);
    await sync.synced;
    await nats.reconnect();
    const fresh = pods("fresh");
    await nats.changed("deleted", a);
    await nats.changed("created", fresh);
    await nats.list("watchtriggers", [a]);
    expect(Object.fromEntries(known)).to.deep.equal({ fresh: fresh.metadata.uid });
  });
});
