import { expect } from "chai";
import { Redis } from "ioredis";
import { redisKeys } from "@fizz/events";
import { startRedis, type TestServer } from "@fizz/testkit";
import { FN_INDEX_KINDS, fnIndexBuiltKey, indexedTriggerTexts } from "../src/function-index";

const PREFIX = "fn-reads-test:";
const NS = "default";
const BUDGET = 4 * 1024 * 1024;

/**
 * The client, and how many round trips went through it (a command, or a pipeline's exec), the
 * texts' MGETs aside (read in chunks sized by the byte budget: store-page-read.ts readWithin).
 */
function counted(client: Redis): { client: Redis; trips: () => number } {
  let trips = 0;
  const proxy = new Proxy(client, {
    get(target, prop) {
      const v: unknown = Reflect.get(target, prop, target);
      if (typeof v !== "function") return v;
      const fn = v as (...a: unknown[]) => unknown;
      if (prop === "pipeline")
        return (...a: unknown[]) => {
          const p = fn.apply(target, a) as ReturnType<Redis["pipeline"]>;
          const exec = p.exec.bind(p);
          p.exec = (...e: Parameters<typeof exec>) => (trips++, exec(...e));
          return p;
        };
      if (prop === "mgetBuffer") return fn.bind(target);
      return (...a: unknown[]) => (trips++, fn.apply(target, a));
    },
  });
  return { client: proxy, trips: () => trips };
}

/**
 * The function index's reads for a console page (indexedTriggerTexts). Most functions have a few
 * triggers of a kind: their sets were read in one pipeline before rows were bounded, then one
 * round trip each (a page of 500 functions with 3 triggers each: ~48 -> ~77 ms median).
 */
describe("registry function index: a page's reads (real Redis)", function () {
  this.timeout(60_000);
  let redis: TestServer;
  let client: Redis;

  before(async () => {
    redis = await startRedis();
    client = new Redis(redis.url);
  });
  after(async () => {
    client?.disconnect();
    await redis?.cleanup();
  });

  const keys = redisKeys(PREFIX);
  const fnName = (i: number) => `f-${String(i).padStart(4, "0")}`;
  /** Functions 0..n-1, each with the named triggers of every indexed kind, stored and indexed. */
  const seed = async (first: number, n: number, triggers: (fn: string) => string[]) => {
    const p = client.pipeline();
    for (let i = first; i < first + n; i++)
      for (const kind of FN_INDEX_KINDS)
        for (const t of triggers(fnName(i))) {
          p.sadd(keys.fnIndex(kind, NS, fnName(i)), t);
          const obj = { metadata: { namespace: NS, name: t }, spec: { function: fnName(i) } };
          p.set(keys.obj(kind, NS, t), JSON.stringify(obj));
        }
    p.set(fnIndexBuiltKey(PREFIX), "1");
    await p.exec();
  };
  const page = (first: number, n: number) =>
    Array.from({ length: n }, (_, i) => ({ namespace: NS, name: fnName(first + i) }));

  it("reads a page's small index sets in as many round trips for 200 functions as for 10", async () => {
    await seed(0, 200, (fn) => [`a-${fn}`, `b-${fn}`]);
    const trips = async (n: number) => {
      const c = counted(client);
      const got = await indexedTriggerTexts(c.client, PREFIX, page(0, n), 5, 500, BUDGET);
      // Every function's two triggers of each kind, read.
      for (const kind of FN_INDEX_KINDS) {
        expect(got?.get(kind)?.counts).to.deep.equal(new Array<number>(n).fill(2));
        expect(got?.get(kind)?.texts.filter((t) => t.raw !== null)).to.have.length(2 * n);
      }
      return c.trips();
    };
    expect(await trips(200)).to.equal(await trips(10));
  });

  it("a set past one SSCAN batch: its smallest names once each, counted whole", async () => {
    const names = Array.from({ length: 2500 }, (_, i) => `t-${String(i).padStart(5, "0")}`);
    const shuffled = [...names].sort(() => Math.random() - 0.5);
    await seed(900, 1, () => shuffled);
    const got = await indexedTriggerTexts(client, PREFIX, page(900, 1), 5, 500, BUDGET);
    for (const kind of FN_INDEX_KINDS) {
      expect(got?.get(kind)?.counts).to.deep.equal([2500]);
      expect(got?.get(kind)?.texts.map((t) => t.key)).to.deep.equal(
        names.slice(0, 5).map((t) => keys.obj(kind, NS, t)),
      );
    }
  });
});
