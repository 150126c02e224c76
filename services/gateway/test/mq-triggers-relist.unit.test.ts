import { expect } from "chai";
import type { NatsConnection } from "@nats-io/transport-node";
import type { MessageQueueTrigger } from "@fizz/events";
import { silentLogger } from "@fizz/kit";
import { FakeRegistryBus, settle } from "@fizz/testkit";
import { MqTriggerStore } from "../src/bus/mq-triggers";
import { subj } from "./routes-fakes";

/**
 * The mq triggers' relist after a NATS reconnect: a change that arrives while it is in flight is
 * applied at once (so `gateway.sync` answers without waiting for the list), the list landing
 * afterwards does not undo it, and a trigger it lacks (deleted while events were lost) stops.
 */
function mqt(name: string, uid = `uid-mqt-${name}`): MessageQueueTrigger {
  const now = new Date(0).toISOString();
  return {
    apiVersion: "fizz.dev/v1",
    kind: "MessageQueueTrigger",
    metadata: {
      namespace: "default",
      name,
      uid,
      revision: 1,
      labels: {},
      createdAt: now,
      updatedAt: now,
    },
    spec: {
      function: "hello",
      subject: `orders.${name}`,
      maxRetries: 3,
      contentType: "application/json",
    },
  };
}

/** `hold` (optional) is awaited before a trigger starts: a start that takes its time. */
async function loadedStore(
  names: string[],
  hold: (t: MessageQueueTrigger) => Promise<void> = () => Promise.resolve(),
) {
  const nats = new FakeRegistryBus(subj);
  const running = new Set<string>();
  const removed: string[] = [];
  const store = new MqTriggerStore({
    nc: nats as unknown as NatsConnection,
    subjects: subj,
    sender: "gateway-test",
    logger: silentLogger(),
    start: async (t) => {
      await hold(t);
      const id = `${t.metadata.name}@${t.metadata.uid}`;
      running.add(id);
      return Promise.resolve({
        stop: () => {
          running.delete(id);
          return Promise.resolve();
        },
      });
    },
    remove: (t) => {
      removed.push(t.metadata.name);
      return Promise.resolve();
    },
    drainMs: 0,
  });
  const abort = new AbortController();
  const started = store.start(abort.signal);
  await nats.list(
    "mqtriggers",
    names.map((n) => mqt(n)),
  );
  await started;
  return {
    nats,
    store,
    running,
    removed,
    signal: abort.signal,
    stop: async () => {
      abort.abort();
      await store.stop();
    },
  };
}

describe("mq triggers relist after a reconnect", () => {
  it("a trigger created during the relist (gateway.sync) runs at once, and the older list landing afterwards keeps it", async () => {
    const w = await loadedStore(["a"]);
    try {
      await w.nats.reconnect();
      expect(w.nats.lists.map((l) => l.kind)).to.deep.equal(["mqtriggers"]);
      w.nats.objects.set("mqtriggers/default/fresh", mqt("fresh"));
      const applied = await w.store.sync(
        { kind: "mqtriggers", op: "created", namespace: "default", name: "fresh", revision: 1 },
        w.signal,
      );
      expect(applied).to.equal(true);
      expect([...w.running]).to.have.members(["a@uid-mqt-a", "fresh@uid-mqt-fresh"]);
      await w.nats.changed("created", mqt("fresh"));
      await w.nats.list("mqtriggers", [mqt("a")]); // taken before the create
      await settle();
      expect([...w.running]).to.have.members(["a@uid-mqt-a", "fresh@uid-mqt-fresh"]);
      expect(w.removed).to.deep.equal([]);
    } finally {
      await w.stop();
    }
  });

  it("a trigger deleted and created again during the relist keeps its new incarnation", async () => {
    const w = await loadedStore(["a"]);
    try {
      await w.nats.reconnect();
      await w.nats.changed("deleted", mqt("a"));
      await w.nats.changed("created", mqt("a", "uid-new"));
      await w.nats.list("mqtriggers", [mqt("a")]);
      await settle();
      expect([...w.running]).to.deep.equal(["a@uid-new"]);
    } finally {
      await w.stop();
    }
  });

  it("a relist still being applied at stop() removes no consumer", async () => {
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    const w = await loadedStore(["a", "gone"], (t) =>
      t.metadata.name === "slow" ? held : Promise.resolve(),
    );
    await w.nats.reconnect();
    // "slow" starts first and takes its time; "a" and "gone" are missing from the list.
    await w.nats.list("mqtriggers", [mqt("slow")]);
    const stopped = w.stop();
    release();
    await stopped;
    expect(w.removed, "durable consumers kept at shutdown").to.deep.equal([]);
    expect(w.running.size).to.equal(0);
  });

  it("a trigger deleted while disconnected (its event lost) stops after the relist", async () => {
    const w = await loadedStore(["a", "gone"]);
    try {
      expect(w.store.running).to.equal(2);
      await w.nats.reconnect();
      await w.nats.list("mqtriggers", [mqt("a")]);
      await settle();
      expect([...w.running]).to.deep.equal(["a@uid-mqt-a"]);
      expect(w.removed).to.deep.equal(["gone"]);
    } finally {
      await w.stop();
    }
  });

  it("a trigger the registry left out of the relist because it cannot read it keeps running, and its durable consumer is not removed", async () => {
    const w = await loadedStore(["a", "unreadable", "gone"]);
    try {
      await w.nats.reconnect();
      // Stored in a shape this registry cannot parse (e.g. a newer one wrote it mid-rollout).
      await w.nats.list("mqtriggers", [mqt("a")], [{ namespace: "default", name: "unreadable" }]);
      await settle();
      expect([...w.running]).to.have.members(["a@uid-mqt-a", "unreadable@uid-mqt-unreadable"]);
      expect(w.removed, "only the trigger deleted while disconnected").to.deep.equal(["gone"]);
      // A later listing that reads it again applies it as usual; one that lacks it removes it.
      await w.nats.reconnect();
      await w.nats.list("mqtriggers", [mqt("a")]);
      await settle();
      expect(w.removed).to.deep.equal(["gone", "unreadable"]);
    } finally {
      await w.stop();
    }
  });
});
