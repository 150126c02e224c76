import { randomBytes } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import { expect } from "chai";
import { Redis } from "ioredis";
import { API_VERSION, type Environment } from "@fizz/events";
import { silentLogger } from "@fizz/kit";
import { waitFor } from "@fizz/testkit";
import { RedisStore } from "../src/store";
import type { KnownJson } from "../src/store-parse";
import { startStack, type Stack } from "./helpers";

/**
 * A page answers known-canonical objects with the Buffers MGET's Buffer form gave (no copy): slices
 * of the socket's chunks, or of redis-parser's module-wide pool when a reply spans chunks. Those
 * must stay what they were while the same connection (and others, which share the pool) parse
 * more large replies before the page's answer is used, and after the pool shrinks (every 50 ms).
 */
describe("registry store pages: Buffers answered as read stay intact", () => {
  let stack: Stack;
  let client: Redis;
  let other: Redis;
  let store: RedisStore;
  const COUNT = 120;
  const name = (i: number) => `b-${String(i).padStart(3, "0")}`;
  // 20-60 KB each, different per object, so a reply spans socket chunks and a mix-up shows.
  const env = (i: number): Environment => {
    const labels: Record<string, string> = {};
    const seed = randomBytes(8).toString("hex");
    for (let l = 0; l < 300 + 3 * i; l++) labels[`l${l}`] = `${seed}-${i}-${l}-${"v".repeat(20)}`;
    return {
      apiVersion: API_VERSION,
      kind: "Environment",
      metadata: {
        namespace: "default",
        name: name(i),
        uid: `u${i}`,
        revision: 1,
        labels,
        createdAt: "2026-01-01T00:00:00.000Z",
        updatedAt: "2026-01-01T00:00:00.000Z",
      },
      spec: { image: "fizz/env-node", poolSize: 1 },
    };
  };
  const expected = new Map<string, string>();

  before(async () => {
    stack = await startStack();
    client = new Redis(stack.redis.url);
    other = new Redis(stack.redis.url);
    store = new RedisStore({
      url: stack.redis.url,
      prefix: "buf-test:",
      client,
      name: "buf-test",
      logger: silentLogger(),
    });
    await waitFor(() => store.ready(), { what: "store ready" });
    for (let i = 0; i < COUNT; i += 20) {
      const put = Array.from({ length: 20 }, (_, j) => env(i + j));
      for (const o of put) expected.set(o.metadata.name, JSON.stringify(o));
      await store.transact(() => Promise.resolve({ writes: { put }, result: undefined }));
    }
    // Large values other commands read meanwhile.
    const p = client.pipeline();
    for (let b = 0; b < 8; b++) p.set(`blob:${b}`, randomBytes(300_000 + b * 50_000));
    await p.exec();
  });

  after(async () => {
    await store?.close();
    client?.disconnect();
    other?.disconnect();
    await stack?.cleanup();
  });

  const pages = async (limit: number): Promise<Buffer[]> => {
    const items: Buffer[] = [];
    let after: { namespace: string; name: string } | undefined;
    do {
      const page = await store.pageJson("environments", { limit, after });
      items.push(...page.items);
      after = page.next;
    } while (after);
    return items;
  };

  it("answers every known object's exact bytes while large replies are parsed meanwhile", async () => {
    // Learn every text (canonical): later pages answer the Buffers as read.
    expect((await pages(50)).map(String)).to.deep.equal([...expected.values()]);
    expect((store as unknown as { known: KnownJson }).known.size("environments")).to.equal(COUNT);
    const held: Buffer[][] = [];
    const noise = async (c: Redis) => {
      for (let r = 0; r < 10; r++) {
        const blobs = await c.mgetBuffer(...Array.from({ length: 8 }, (_, b) => `blob:${b}`));
        for (const b of blobs) b!.fill(0xaa); // nothing handed out may share these bytes
        await c.get(`blob:${r % 8}`);
      }
    };
    await Promise.all([
      ...Array.from({ length: 6 }, async (_, k) => held.push(await pages(7 + k * 9))),
      noise(client),
      noise(other),
    ]);
    // The pool shrinks on a 50 ms timer; more large replies after that.
    await sleep(300);
    await Promise.all([noise(client), noise(other)]);
    expect(held).to.have.length(6);
    // The no-copy path was taken: answers are views into the parser's larger buffers.
    expect(held.flat().some((b) => b.buffer.byteLength > b.length)).to.equal(true);
    for (const items of held) {
      expect(items).to.have.length(COUNT);
      items.forEach((b, i) => expect(b.toString(), `item ${i}`).to.equal(expected.get(name(i))));
    }
  });
});
