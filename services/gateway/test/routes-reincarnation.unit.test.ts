import { expect } from "chai";
import type { Lease } from "@fizz/events";
import { fakeRouteStore, fn } from "./routes-fakes";

/**
 * A function deleted and created again under its name is a new object (new uid) whose revisions
 * start again at 1. A gateway that missed the delete (NATS reconnecting: events lost, the
 * registry's barrier for the delete missed, which it logs and answers anyway) may learn of the new
 * one first from `gateway.sync`. Once it answers "applied", no request may reach the old
 * function's instances, and the new one's revision-1 leases must be taken: a `minRevision` left
 * at the old incarnation's revision refuses them (and asks the scheduler for that revision).
 */
describe("route table: a function re-created under its name, seen first by gateway.sync", () => {
  it("drops the old incarnation's leases and takes the new one's revisions from 1", async () => {
    const old = fn("hello");
    old.metadata.uid = "uid-old";
    old.metadata.revision = 5;
    const replies: Lease[] = [
      {
        instanceId: "old-1",
        address: "http://127.0.0.1:1001",
        function: { namespace: "default", name: "hello", revision: 5 },
        slots: 1,
        concurrency: 1,
        timeoutMs: 1000,
      },
    ];
    const { nats, leases, store } = fakeRouteStore(() => Promise.resolve(replies.shift()!));
    const abort = new AbortController();
    const loading = store.start(abort.signal);
    try {
      await nats.list("functions", [old]);
      await nats.list("httptriggers", []);
      await loading;
      const fl = leases.get("default", "hello")!;
      const held = await leases.acquire(fl);
      leases.release(held);
      expect(held.revision).to.equal(5);

      // NATS reconnects; meanwhile hello is deleted and created again (both events lost).
      await nats.reconnect();
      const again = fn("hello");
      again.metadata.uid = "uid-new";
      again.metadata.createdAt = new Date(1000).toISOString();
      nats.objects.set("functions/default/hello", again);
      const applied = await store.sync(
        { kind: "functions", op: "created", namespace: "default", name: "hello", revision: 1 },
        abort.signal,
      );
      expect(applied).to.equal(true);
      expect(store.functionRecord("default", "hello")?.uid).to.equal("uid-new");
      expect(held.dropped, "the old function's lease is no longer handed out").to.equal(true);
      expect(leases.tryTake(fl)).to.equal(undefined);
      expect(fl.minRevision, "revisions start again").to.equal(1);

      // The relist (taken before the sync) lands: the sync's change stands.
      await nats.list("functions", [again]);
      await nats.list("httptriggers", []);
      expect(fl.minRevision).to.equal(1);
      expect(leases.get("default", "hello")).to.equal(fl);
    } finally {
      abort.abort();
      store.stop();
    }
  });
});
