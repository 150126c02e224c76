import { expect } from "chai";
import { pino } from "pino";
import { Codecs, Environment, subjects as buildSubjects } from "@fizz/events";
import { connectNats, followRegistryListing, serve, type NatsConnection } from "@fizz/kit";
import { startNats, waitFor, type TestServer } from "@fizz/testkit";

/** Log records kept as objects, to check their levels. */
function memoryLogger() {
  const records: Array<{ level: number; msg: string }> = [];
  const logger = pino(
    { level: "debug" },
    { write: (l: string) => void records.push(JSON.parse(l) as { level: number; msg: string }) },
  );
  return { logger, records };
}

const WARN = 40;

describe("followRegistryListing (shared/kit)", function () {
  this.timeout(30_000);
  const subjects = buildSubjects();
  let nats: TestServer;
  let nc: NatsConnection;

  before(async () => {
    nats = await startNats();
    nc = await connectNats({ url: nats.url, name: "t", logger: pino({ level: "silent" }) });
  });
  after(async () => {
    await nc?.close();
    await nats?.cleanup();
  });

  it("waits quietly for a registry that starts later (debug only), then lists once it answers", async () => {
    const { logger, records } = memoryLogger();
    const abort = new AbortController();
    const lists: number[] = [];
    const { synced } = followRegistryListing({
      nc,
      subjects,
      kind: "functions",
      sender: "t",
      logger,
      signal: abort.signal,
      onList: (items) => lists.push(items.length),
    });
    // A few failed attempts (no responders): the normal start-up order, not worth a warning.
    await waitFor(() => records.filter((r) => r.msg.startsWith("waiting")).length >= 2, {
      timeoutMs: 5_000,
      what: "two failed listings",
    });
    const registry = serve(
      nc,
      subjects.registryList,
      Codecs.registryList,
      () => Promise.resolve({ items: [] }),
      {
        sender: "registry",
        logger,
      },
    );
    try {
      await synced;
      expect(lists).to.deep.equal([0]);
      expect(records.filter((r) => r.level >= WARN)).to.deep.equal([]);
    } finally {
      registry.unsubscribe();
      abort.abort();
    }
  });

  it("lists within half a second of the registry subscribing, however long nothing answered", async () => {
    const abort = new AbortController();
    const { synced } = followRegistryListing({
      nc,
      subjects,
      kind: "timetriggers",
      sender: "t",
      logger: pino({ level: "silent" }),
      signal: abort.signal,
      onList: () => undefined,
    });
    // By now a doubling back-off would wait 2 to 4 s between attempts.
    await new Promise((r) => setTimeout(r, 4_500));
    const registry = serve(
      nc,
      subjects.registryList,
      Codecs.registryList,
      () => Promise.resolve({ items: [] }),
      { sender: "registry", logger: pino({ level: "silent" }) },
    );
    const t0 = performance.now();
    try {
      await synced;
      expect(performance.now() - t0).to.be.below(500);
    } finally {
      registry.unsubscribe();
      abort.abort();
    }
  });

  it("re-asks fast for 10 s in all while nothing answers, then only at the back-off's pace", async function () {
    this.timeout(60_000);
    // Its own connection, so its count of sent messages is the listing's requests.
    const own = await connectNats({ url: nats.url, name: "t2", logger: pino({ level: "silent" }) });
    const abort = new AbortController();
    try {
      const { synced } = followRegistryListing({
        nc: own,
        subjects,
        kind: "mqtriggers",
        sender: "t",
        logger: pino({ level: "silent" }),
        signal: abort.signal,
        onList: () => undefined,
      });
      const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
      await sleep(10_500);
      const before = own.stats().outMsgs;
      await sleep(3_000);
      const asked = own.stats().outMsgs - before;
      // The back-off (250 ms doubling) asks 3 or 4 times in these 3 s; re-polling every 50 ms
      // in each attempt would ask ~50 times.
      expect(asked).to.be.below(10);
      abort.abort();
      await synced;
    } finally {
      abort.abort();
      await own.close();
    }
  });

  it("gives up a listing whose registry answers the token it was given, instead of asking forever", async () => {
    let asked = 0;
    const registry = serve(
      nc,
      subjects.registryList,
      Codecs.registryList,
      () => {
        asked++;
        return Promise.resolve({ items: [], continue: "stuck" });
      },
      { sender: "registry", logger: pino({ level: "silent" }) },
    );
    const abort = new AbortController();
    let listed = false;
    try {
      const { synced } = followRegistryListing({
        nc,
        subjects,
        kind: "watchtriggers",
        sender: "t",
        logger: pino({ level: "silent" }),
        signal: abort.signal,
        onList: () => (listed = true),
      });
      await new Promise((r) => setTimeout(r, 1_000));
      abort.abort();
      await synced;
      expect(listed).to.equal(false);
      // Two requests per attempt, attempts at the back-off's pace (a few in 1 s), not hundreds.
      expect(asked).to.be.within(2, 20);
    } finally {
      abort.abort();
      registry.unsubscribe();
    }
  });

  it("stops retrying when its signal aborts, and `synced` resolves", async () => {
    const abort = new AbortController();
    let listed = false;
    const { synced } = followRegistryListing({
      nc,
      subjects,
      kind: "environments",
      sender: "t",
      logger: pino({ level: "silent" }),
      signal: abort.signal,
      onList: () => (listed = true),
    });
    setTimeout(() => abort.abort(), 300);
    await synced;
    expect(listed).to.equal(false);
  });

  it("follows the registry's pages to the end and hands over every object once, in one call", async () => {
    const all = Array.from({ length: 1203 }, (_, i) =>
      Environment.parse({
        apiVersion: "fizz.dev/v1",
        kind: "Environment",
        metadata: {
          namespace: "default",
          name: `env-${String(i).padStart(5, "0")}`,
          uid: `uid-${i}`,
          revision: 1,
          labels: {},
          createdAt: "2026-01-01T00:00:00Z",
          updatedAt: "2026-01-01T00:00:00Z",
        },
        spec: { image: "fizz/env-node" },
      }),
    );
    const asked: Array<{ limit: number | undefined; continue: string | undefined }> = [];
    // A registry answering pages as the real one does: `continue` is the last name of the page.
    const registry = serve(
      nc,
      subjects.registryList,
      Codecs.registryList,
      (req) => {
        asked.push({ limit: req.limit, continue: req.continue });
        const from = req.continue === undefined ? 0 : Number(req.continue);
        const limit = req.limit ?? all.length;
        const items = all.slice(from, from + limit);
        const next = from + items.length;
        return Promise.resolve({
          items,
          ...(next < all.length ? { continue: String(next) } : {}),
          ...(from === 0 ? { skipped: [] } : {}),
        });
      },
      { sender: "registry", logger: pino({ level: "silent" }) },
    );
    const abort = new AbortController();
    const lists: string[][] = [];
    try {
      const { synced } = followRegistryListing({
        nc,
        subjects,
        kind: "environments",
        sender: "t",
        logger: pino({ level: "silent" }),
        signal: abort.signal,
        onList: (items) => lists.push(items.map((e) => e.metadata.name)),
      });
      await synced;
      expect(lists).to.have.length(1);
      expect(lists[0]).to.deep.equal(all.map((e) => e.metadata.name));
      // Every request asked for a bounded page, so no reply outgrows NATS max_payload.
      expect(asked.length).to.be.greaterThan(2);
      for (const a of asked) expect(a.limit).to.be.within(1, 1000);
    } finally {
      registry.unsubscribe();
      abort.abort();
    }
  });
});
