import { connectNats, silentLogger, type NatsConnection } from "@fizz/kit";
import { startNats, type TestServer } from "@fizz/testkit";
import { expect } from "chai";
import { lazyArchiveStore } from "../src/store";

const DIGEST = `sha256:${"ab".repeat(32)}`;
/** The JetStream API requests that set a store up (the bucket's stream, the account's info). */
const SET_UP = /^\$JS\.API\.(INFO|STREAM\.(CREATE|INFO|UPDATE))\b/;

/**
 * The archive store opened ahead (index.ts calls open() at start): the first specialization's
 * read then sends no set-up request to JetStream, only its own lookup. A real nats-server.
 */
describe("archive store opened ahead of its first use", function () {
  this.timeout(30_000);
  let nats: TestServer;
  let nc: NatsConnection;
  let watcher: NatsConnection;
  let seen: string[];
  let sub: { unsubscribe(): void };

  before(async () => {
    nats = await startNats();
    watcher = await connectNats({ url: nats.url, name: "watcher", logger: silentLogger() });
  });
  after(async () => {
    await watcher.close();
    await nats.cleanup();
  });
  beforeEach(async () => {
    nc = await connectNats({ url: nats.url, name: "poolkeeper", logger: silentLogger() });
    seen = [];
    sub = watcher.subscribe("$JS.API.>", { callback: (_err, m) => void seen.push(m.subject) });
    // The subscription is on the server before the test sends anything.
    await watcher.flush();
  });
  afterEach(async () => {
    sub.unsubscribe();
    await nc.close();
  });

  /** The JetStream API subjects a first lookup sends, after `prepare`. */
  async function firstLookup(prepare: (s: ReturnType<typeof lazyArchiveStore>) => Promise<void>) {
    const store = lazyArchiveStore(nc);
    await prepare(store);
    await watcher.flush();
    seen.length = 0;
    expect(await store.has(DIGEST)).to.equal(false);
    await watcher.flush();
    return [...seen];
  }

  it("without open(), the first lookup sets the store up (the cost open() moves)", async () => {
    const subjects = await firstLookup(() => Promise.resolve());
    expect(subjects.some((s) => SET_UP.test(s))).to.equal(true);
  });

  it("after open(), the first lookup sends no set-up request", async () => {
    let opened: boolean | undefined;
    const subjects = await firstLookup(async (s) => {
      opened = await s.open();
    });
    expect(opened).to.equal(true);
    expect(subjects.length).to.be.greaterThan(0);
    expect(subjects.filter((s) => SET_UP.test(s))).to.deep.equal([]);
  });

  it("open() never throws: a store that cannot open answers false and is tried again", async () => {
    const store = lazyArchiveStore(nc);
    await nc.close();
    expect(await store.open()).to.equal(false);
    // Not remembered as open: the next use tries again (and fails as before, UNAVAILABLE).
    const err = await store.has(DIGEST).then(
      () => undefined,
      (e: unknown) => e as { code?: string },
    );
    expect(err?.code).to.equal("UNAVAILABLE");
  });
});
