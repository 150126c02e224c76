import { expect } from "chai";
import { pino } from "pino";
import { Codecs, subjects as buildSubjects } from "@fizz/events";
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
});
