import { expect } from "chai";
import { Redis } from "ioredis";
import { API_VERSION, type Environment } from "@fizz/events";
import { silentLogger } from "@fizz/kit";
import { waitFor } from "@fizz/testkit";
import { RedisStore } from "../src/store";
import type { KnownJson } from "../src/store-parse";
import { startStack, type Stack } from "./helpers";

/**
 * The store remembers the stored texts its listings found readable (KnownJson), one per object;
 * a write or a removal it commits forgets the object's, and the next listing learns the new text.
 * Learning each written text at commit cost every write a parse, a schema check and an encoding,
 * and remembering every text ever written grew the registry for ever when it wrote often (status
 * updates, builds) and nothing listed the whole kind.
 */
describe("registry store listings: memory and watched reads", () => {
  let stack: Stack;
  let client: Redis;
  let store: RedisStore;
  const known = () => (store as unknown as { known: KnownJson }).known;
  const env = (revision: number): Environment => ({
    apiVersion: API_VERSION,
    kind: "Environment",
    metadata: {
      namespace: "default",
      name: "x",
      uid: "u",
      revision,
      labels: {},
      createdAt: "2026-01-01T00:00:00.000Z",
      updatedAt: "2026-01-01T00:00:00.000Z",
    },
    spec: { image: "fizz/env-node", poolSize: 1 },
  });

  before(async () => {
    stack = await startStack();
    client = new Redis(stack.redis.url);
    store = new RedisStore({
      url: stack.redis.url,
      prefix: "mem-test:",
      client,
      name: "mem-test",
      logger: silentLogger(),
    });
    await waitFor(() => store.ready(), { what: "store ready" });
  });

  after(async () => {
    await store?.close();
    client?.disconnect();
    await stack?.cleanup();
  });

  const put = (revision: number) =>
    store.transact(() => Promise.resolve({ writes: { put: [env(revision)] }, result: undefined }));

  it("remembers nothing for writes, one text per object once listed, none once removed", async () => {
    for (let r = 1; r <= 200; r++) await put(r);
    expect(known().size("environments")).to.equal(0);
    const listed = await store.listingJson("environments");
    expect(listed.items).to.deep.equal([JSON.stringify(env(200))]);
    expect(known().size("environments")).to.equal(1);
    await store.transact(() =>
      Promise.resolve({
        writes: { remove: [{ kind: "environments" as const, namespace: "default", name: "x" }] },
        result: undefined,
      }),
    );
    expect(known().size("environments")).to.equal(0);
  });

  it("answers a written object's new text in the listings after the write, not the known one", async () => {
    await put(1);
    expect((await store.listingJson("environments")).items).to.deep.equal([JSON.stringify(env(1))]);
    expect(known().size("environments")).to.equal(1);
    // The write forgets what the listing learnt of the old text, and the next listing learns the
    // new one: both a full listing and a page answer it, parsed and as stored.
    await put(2);
    expect(known().size("environments")).to.equal(0);
    const page = await store.pageJson("environments", { limit: 10 });
    expect(page.items.map(String)).to.deep.equal([JSON.stringify(env(2))]);
    expect(known().size("environments")).to.equal(1);
    expect((await store.listingJson("environments")).items).to.deep.equal([JSON.stringify(env(2))]);
    expect((await store.listing("environments")).items).to.deep.equal([env(2)]);
    await put(3);
    expect((await store.listing("environments")).items).to.deep.equal([env(3)]);
    // Listed once more with the known text, then written: the page answers the new bytes.
    expect((await store.pageJson("environments", { limit: 10 })).items.map(String)).to.deep.equal([
      JSON.stringify(env(3)),
    ]);
    await put(4);
    expect((await store.pageJson("environments", { limit: 10 })).items.map(String)).to.deep.equal([
      JSON.stringify(env(4)),
    ]);
    await store.transact(() =>
      Promise.resolve({
        writes: { remove: [{ kind: "environments" as const, namespace: "default", name: "x" }] },
        result: undefined,
      }),
    );
  });

  it("watches every listed object in a transaction, past one MGET/WATCH chunk of 1000", async () => {
    const other = new Redis(stack.redis.url);
    try {
      const p = other.pipeline();
      for (let i = 0; i < 1500; i++) {
        const name = `w-${String(i).padStart(4, "0")}`;
        const obj = { ...env(1), metadata: { ...env(1).metadata, name } };
        p.set(`mem-test:obj:environments:default:${name}`, JSON.stringify(obj));
        p.sadd("mem-test:idx:environments:default", name);
        p.sadd("mem-test:idx:environments", `default/${name}`);
      }
      await p.exec();
      let runs = 0;
      await store.transact(async (r) => {
        runs++;
        expect(await r.list("environments")).to.have.length(1500);
        // Another writer changes an object of the second chunk after our read: EXEC must abort.
        if (runs === 1) {
          const last = env(2);
          last.metadata.name = "w-1499";
          await other.set("mem-test:obj:environments:default:w-1499", JSON.stringify(last));
        }
        return { writes: { put: [env(9)] }, result: undefined };
      });
      expect(runs).to.equal(2);
    } finally {
      other.disconnect();
    }
  });
});
