import { DEFAULT_REDIS_PREFIX } from "@fizz/events";
import { expect } from "chai";
import { FN_INDEX_KINDS, fnIndexBuiltKey, fnIndexKey } from "../src/function-index";
import { mqtBody, registryEnv, startRegistry, timerBody, triggerBody, watchBody } from "./helpers";
import {
  consoleRow,
  createFunctions,
  dropFunctionIndex,
  registrySuite,
  secondStore,
} from "./registry-suite";

const P = DEFAULT_REDIS_PREFIX;
const BUILT = fnIndexBuiltKey(P);

interface Row {
  namespace: string;
  name: string;
  routes: { trigger: string }[];
  triggers: { kind: string; name: string }[];
}

/**
 * The function index (function-index.ts): per kind, which triggers invoke a function, kept in each
 * trigger write's transaction, built at start for a store written before it, and read by the
 * console's listing.
 */
describe("registry function index (real NATS and Redis)", function () {
  this.timeout(120_000);
  const suite = registrySuite();

  before(async () => {
    await createFunctions(suite.reg.api, "default", "py", ["a", "b", "c"]);
    await createFunctions(suite.reg.api, "other", "py", ["a"]);
  });

  /** Every non-empty index set, as `kind ns/fn: names` (sorted). */
  const indexNow = async (): Promise<string[]> => {
    const out: string[] = [];
    for (const key of await suite.stack.client.keys(`${P}fnidx:*`)) {
      if (key === BUILT) continue;
      const [kind, ns, fn] = key.slice(`${P}fnidx:`.length).split(":");
      const names = (await suite.stack.client.smembers(key)).sort();
      if (names.length > 0) out.push(`${kind} ${ns}/${fn}: ${names.join(",")}`);
    }
    return out.sort();
  };
  /** The same, computed from the stored trigger objects themselves. */
  const indexFromObjects = async (): Promise<string[]> => {
    const sets = new Map<string, string[]>();
    for (const kind of FN_INDEX_KINDS) {
      for (const key of await suite.stack.client.keys(`${P}obj:${kind}:*`)) {
        const [ns, name] = key.slice(`${P}obj:${kind}:`.length).split(":");
        const fn = (
          JSON.parse((await suite.stack.client.get(key)) ?? "{}") as { spec: { function: string } }
        ).spec.function;
        const id = `${kind} ${ns}/${fn}`;
        sets.set(id, [...(sets.get(id) ?? []), name ?? ""]);
      }
    }
    return [...sets].map(([id, names]) => `${id}: ${names.sort().join(",")}`).sort();
  };
  const row = async (ns: string, fn: string): Promise<string[]> => {
    const item = await consoleRow<Row>(suite.reg.api, ns, fn);
    return [
      ...item.routes.map((r) => `httptriggers/${r.trigger}`),
      ...item.triggers.map((t) => `${t.kind}/${t.name}`),
    ].sort();
  };
  const dropIndex = () => dropFunctionIndex(suite.stack, { sets: true });

  it("follows trigger creates, a trigger moved to another function, and deletes", async () => {
    const api = suite.reg.api.ns("default");
    expect((await api.create("httptriggers", triggerBody("r1", "a"))).status).to.equal(201);
    expect((await api.create("mqtriggers", mqtBody("m1", "a"))).status).to.equal(201);
    expect((await api.create("timetriggers", timerBody("t1", "a"))).status).to.equal(201);
    expect((await api.create("watchtriggers", watchBody("w1", "b"))).status).to.equal(201);
    expect(
      (await suite.reg.api.ns("other").create("timetriggers", timerBody("t1", "a"))).status,
    ).to.equal(201);
    expect(await suite.stack.client.get(BUILT)).to.equal("1");
    expect(
      await suite.stack.client.smembers(fnIndexKey(P, "timetriggers", "default", "a")),
    ).to.deep.equal(["t1"]);
    expect(await indexNow()).to.deep.equal([
      "httptriggers default/a: r1",
      "mqtriggers default/a: m1",
      "timetriggers default/a: t1",
      "timetriggers other/a: t1",
      "watchtriggers default/b: w1",
    ]);
    expect(await row("default", "a")).to.deep.equal([
      "httptriggers/r1",
      "mqtriggers/m1",
      "timetriggers/t1",
    ]);

    // A PATCH may name another function: the trigger leaves a's set and joins c's.
    const moved = await api.patch("mqtriggers", "m1", { spec: { function: "c" } });
    expect(moved.status, JSON.stringify(moved.body)).to.equal(200);
    const route = await api.patch("httptriggers", "r1", { spec: { function: "b" } });
    expect(route.status, JSON.stringify(route.body)).to.equal(200);
    // An update that keeps the function keeps the member.
    expect(
      (await api.patch("timetriggers", "t1", { spec: { cron: "*/7 * * * *" } })).status,
    ).to.equal(200);
    expect(await indexNow()).to.deep.equal([
      "httptriggers default/b: r1",
      "mqtriggers default/c: m1",
      "timetriggers default/a: t1",
      "timetriggers other/a: t1",
      "watchtriggers default/b: w1",
    ]);
    expect(await row("default", "a")).to.deep.equal(["timetriggers/t1"]);
    expect(await row("default", "b")).to.deep.equal(["httptriggers/r1", "watchtriggers/w1"]);
    expect(await row("default", "c")).to.deep.equal(["mqtriggers/m1"]);

    for (const [kind, name] of [
      ["httptriggers", "r1"],
      ["mqtriggers", "m1"],
      ["watchtriggers", "w1"],
    ] as const)
      expect((await api.delete(kind, name)).status).to.equal(200);
    expect(await indexNow()).to.deep.equal([
      "timetriggers default/a: t1",
      "timetriggers other/a: t1",
    ]);
    expect(await row("default", "b")).to.deep.equal([]);
    expect(await indexNow()).to.deep.equal(await indexFromObjects());
  });

  it("indexes a store written without it at start, and answers by the namespace scan until then", async () => {
    const api = suite.reg.api.ns("default");
    for (let i = 0; i < 30; i++) {
      const fn = ["a", "b", "c"][i % 3] ?? "a";
      expect((await api.create("timetriggers", timerBody(`old-${i}`, fn))).status).to.equal(201);
    }
    expect((await api.create("httptriggers", triggerBody("old-r", "c"))).status).to.equal(201);
    const want = await indexFromObjects();
    const rowB = await row("default", "b");
    expect(rowB).to.have.length(10);
    // As a Redis written by a registry before the index: no sets, no marker.
    await dropIndex();
    expect(await indexNow()).to.deep.equal([]);
    // Not built: the console falls back to reading the namespace's triggers, still exact.
    expect(await row("default", "b")).to.deep.equal(rowB);
    // A registry starting on this Redis builds it (pages of 500 through the list index).
    const second = await startRegistry(registryEnv(suite.stack));
    try {
      expect(await suite.stack.client.get(BUILT)).to.equal("1");
      expect(await indexNow()).to.deep.equal(want);
      const res = await second.api.call("GET", "/v1/console/functions/default/b");
      const item = (res.body as unknown as { item: Row }).item;
      expect(item.triggers.map((t) => t.name).sort()).to.deep.equal(
        rowB.map((r) => r.replace("timetriggers/", "")),
      );
    } finally {
      await second.svc.stop();
    }
  });

  it("stays equal to the objects under concurrent moves, creates and deletes, a build among them", async () => {
    // A second store on the same Redis: another replica's transactions, and its start-up build.
    const second = await secondStore(suite.stack, "fn-index-test");
    const store = second.store;
    try {
      const api = suite.reg.api.ns("default");
      for (let i = 0; i < 12; i++)
        expect((await api.create("mqtriggers", mqtBody(`q-${i}`, "a"))).status).to.equal(201);
      await dropIndex();
      const fns = ["a", "b", "c"];
      const writes: Promise<unknown>[] = [];
      for (let round = 0; round < 6; round++) {
        for (let i = 0; i < 12; i++) {
          const fn = fns[(i + round) % 3] ?? "a";
          // Moves race each other on one trigger (the same trigger from several writers).
          writes.push(api.patch("mqtriggers", `q-${i}`, { spec: { function: fn } }));
          writes.push(
            api.patch("mqtriggers", `q-${(i + 5) % 12}`, { spec: { function: fns[round % 3] } }),
          );
        }
        writes.push(api.create("timetriggers", timerBody(`n-${round}`, fns[round % 3] ?? "a")));
        if (round > 0) writes.push(api.delete("timetriggers", `n-${round - 1}`));
        if (round === 2) writes.push(store.buildRouteIndex());
      }
      const settled = await Promise.allSettled(writes);
      // Writes may lose optimistic races (UNAVAILABLE after retries); none may leave the index wrong.
      for (const s of settled) if (s.status === "rejected") throw s.reason;
      const moves = settled.filter(
        (s) => s.status === "fulfilled" && (s.value as { status?: number }).status === 200,
      );
      expect(moves.length, "moves that committed").to.be.greaterThan(12);
      await store.buildRouteIndex(); // the marker, if the build above ran before writes ended
      expect(await suite.stack.client.get(BUILT)).to.equal("1");
      expect(await indexNow()).to.deep.equal(await indexFromObjects());
      for (const fn of fns) {
        const shown = await row("default", fn);
        const fromObjects = (await indexFromObjects())
          .filter((l) => l.includes(` default/${fn}:`))
          .flatMap((l) => {
            const [id = "", names = ""] = l.split(": ");
            return names.split(",").map((n) => `${id.split(" ")[0]}/${n}`);
          })
          .sort();
        expect(shown, fn).to.deep.equal(fromObjects);
      }
    } finally {
      await second.close();
    }
  });
});
