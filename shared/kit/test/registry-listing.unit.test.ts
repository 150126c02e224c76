import { expect } from "chai";
import { pino } from "pino";
import { subjects as buildSubjects, type SkippedObject } from "@fizz/events";
import { FakeRegistryBus, settle } from "@fizz/testkit";
import { followRegistryListing } from "../src/registry-listing";
import { silentLogger } from "../src/logger";
import type { NatsConnection } from "../src/nats";

const subjects = buildSubjects();

describe("followRegistryListing reconnects (shared/kit, unit)", () => {
  let abort: AbortController;
  beforeEach(() => (abort = new AbortController()));
  afterEach(() => abort.abort());

  const follow = (nats: FakeRegistryBus) => {
    let lists = 0;
    const f = followRegistryListing({
      nc: nats as unknown as NatsConnection,
      subjects,
      kind: "functions",
      sender: "t",
      logger: silentLogger(),
      signal: abort.signal,
      onList: () => lists++,
    });
    return { ...f, lists: () => lists };
  };

  it("lists again after a reconnect", async () => {
    const nats = new FakeRegistryBus(subjects);
    const f = follow(nats);
    await nats.answer();
    await f.synced;
    await nats.reconnect();
    expect(nats.requests).to.equal(2);
    await nats.answer();
    expect(f.lists()).to.equal(2);
  });

  it("a reconnect while a listing is in flight lists once more after it; several coalesce", async () => {
    const nats = new FakeRegistryBus(subjects);
    const f = follow(nats);
    await nats.answer();
    await f.synced;
    await nats.reconnect();
    expect(nats.requests).to.equal(2);
    // The relist's request went out (and may have been answered) before a second disconnect.
    await nats.reconnect();
    await nats.reconnect();
    expect(nats.requests, "no second request while one is in flight").to.equal(2);
    await nats.answer();
    expect(nats.requests, "one more listing after the one in flight").to.equal(3);
    await nats.answer();
    await settle();
    expect(nats.requests, "coalesced: only one more").to.equal(3);
    expect(f.lists()).to.equal(3);
  });

  it("relist() joins the listing in flight, follow-up included", async () => {
    const nats = new FakeRegistryBus(subjects);
    const f = follow(nats);
    let joined = false;
    void f.relist().then(() => (joined = true));
    await nats.reconnect();
    await nats.answer();
    expect(joined, "still the follow-up listing to go").to.equal(false);
    await nats.answer();
    expect(joined).to.equal(true);
    expect(nats.requests).to.equal(2);
  });

  it("hands onList what the registry skipped (none from an older registry), and warns once per listing", async () => {
    const nats = new FakeRegistryBus(subjects);
    const got: SkippedObject[][] = [];
    const logs: Array<{ level: number; msg: string; kept?: number; objects?: string[] }> = [];
    const { synced } = followRegistryListing({
      nc: nats as unknown as NatsConnection,
      subjects,
      kind: "functions",
      sender: "t",
      logger: pino(
        { level: "info" },
        { write: (line: string) => void logs.push(JSON.parse(line) as (typeof logs)[number]) },
      ),
      signal: abort.signal,
      onList: (_items, { skipped }) => got.push(skipped),
    });
    await nats.answer([], [{ namespace: "default", name: "broken" }]);
    await synced;
    await nats.reconnect();
    await nats.answer();
    expect(got).to.deep.equal([[{ namespace: "default", name: "broken" }], []]);
    const warnings = logs.filter((l) => l.level === 40);
    expect(warnings.map((l) => [l.kept, l.objects])).to.deep.equal([[1, ["default/broken"]]]);
  });
});
