import {
  Codecs,
  DEFAULT_REDIS_PREFIX,
  LIST_MAX_LIMIT,
  redisKeys,
  subjects,
  type Instance,
} from "@fizz/events";
import { connectNats, createLogger, serve, silentLogger, type NatsConnection } from "@fizz/kit";
import { expect } from "chai";
import { consoleFunctionsPage, ROW_ITEMS, TRIGGER_SCANS_AT_ONCE } from "../src/console-functions";
import { fnIndexKey } from "../src/function-index";
import type { RedisStore } from "../src/store";
import { envBody, fnBody, mqtBody, timerBody, triggerBody, type Reply } from "./helpers";
import { created, dropFunctionIndex, registrySuite, secondStore } from "./registry-suite";

const S = subjects("fizz.v1");

interface Summary {
  namespace: string;
  name: string;
  routes: { trigger: string }[];
  routesTotal: number;
  triggers: { kind: string; name: string }[];
  triggersTotal: number;
  instances: { specialized: number; current: number };
}
interface PageBody {
  items: Summary[];
  continue?: string;
  instancesKnown: boolean;
}

/** What one function should show: its routes' and triggers' names (set up below). */
interface Expected {
  routes: string[];
  triggers: string[];
  specialized: number;
}

/**
 * The console's function listing pages like every list (`limit`, `continue`) and joins routes,
 * triggers and instances for the page's functions only, reading triggers of the page's
 * namespaces only.
 */
describe("registry console listing in pages (real NATS and Redis)", function () {
  this.timeout(120_000);
  const lines: string[] = [];
  // Errors only: the store logs each unreadable object a listing read (and left out).
  const suite = registrySuite({
    logger: createLogger("registry", "error", { write: (l: string) => void lines.push(l) }),
  });
  let nc: NatsConnection;
  const expected = new Map<string, Expected>();
  const leftOut = () => lines.filter((l) => l.includes("left out of a listing")).length;

  before(async () => {
    const create = (ns: string, kind: string, body: unknown) =>
      created(suite.reg.api, ns, kind, body);
    const plan = (ns: string, fn: string): Expected => {
      const e = { routes: [], triggers: [], specialized: 0 };
      expected.set(`${ns}/${fn}`, e);
      return e;
    };
    // default: 25 functions, some with routes, mq and time triggers. Trigger names sort apart
    // from their functions' names, so a join by position would attach them to the wrong one.
    await create("default", "environments", envBody("py"));
    for (let i = 0; i < 25; i++) {
      const fn = `f-${String(i).padStart(2, "0")}`;
      const e = plan("default", fn);
      await create("default", "functions", fnBody(fn, "py"));
      if (i % 3 === 0) {
        const name = `route-${String(24 - i).padStart(2, "0")}`;
        await create("default", "httptriggers", triggerBody(name, fn));
        e.routes.push(name);
      }
      if (i % 4 === 0) {
        await create("default", "mqtriggers", mqtBody(`a-mq-${i}`, fn));
        e.triggers.push(`mqtriggers/a-mq-${i}`);
      }
      if (i % 5 === 0) {
        await create("default", "timetriggers", timerBody(`tick-${i}`, fn));
        e.triggers.push(`timetriggers/tick-${i}`);
      }
    }
    // team-b: the same function names as default, with triggers of its own.
    await create("team-b", "environments", envBody("py"));
    for (const fn of ["f-00", "f-01", "f-02"]) {
      const e = plan("team-b", fn);
      await create("team-b", "functions", fnBody(fn, "py"));
      await create("team-b", "httptriggers", triggerBody(`b-${fn}`, fn));
      e.routes.push(`b-${fn}`);
    }
    // noise: one function with many triggers.
    await create("noise", "environments", envBody("py"));
    await create("noise", "functions", fnBody("busy", "py"));
    const busy = plan("noise", "busy");
    for (let i = 0; i < 150; i++) {
      const name = `t-${String(i).padStart(3, "0")}`;
      await create("noise", "timetriggers", timerBody(name, "busy"));
      busy.triggers.push(`timetriggers/${name}`);
    }
    // A trigger of default/f-24 written behind the registry's back that no listing can read (it
    // is logged and left out each time one reads it), indexed under its function as a write
    // would (function-index.ts).
    const keys = redisKeys();
    await suite.stack.client
      .multi()
      .set(
        keys.obj("mqtriggers", "default", "broken"),
        '{"kind":"MessageQueueTrigger","spec":{"function":"f-24"}}',
      )
      .sadd(keys.nsIndex("mqtriggers", "default"), "broken")
      .sadd(keys.kindIndex("mqtriggers"), "default/broken")
      .zadd(keys.listIndex("mqtriggers"), 0, "default\0broken")
      .sadd(fnIndexKey(DEFAULT_REDIS_PREFIX, "mqtriggers", "default", "f-24"), "broken")
      .exec();

    nc = await connectNats({
      url: suite.stack.nats.url,
      name: "test-poolkeeper",
      logger: silentLogger(),
    });
    const inst = (id: string, ns: string, fn: string, revision: number): Instance => ({
      id,
      address: `http://127.0.0.1:1/${id}`,
      environment: { namespace: ns, name: "py" },
      state: "specialized",
      backend: "process",
      startedAt: 1,
      function: { namespace: ns, name: fn, revision },
      specializedAt: 2,
    });
    serve(
      nc,
      S.poolkeeperList,
      Codecs.poolkeeperList,
      () =>
        Promise.resolve({
          instances: [
            inst("a", "default", "f-07", 1),
            inst("b", "default", "f-07", 1),
            inst("c", "team-b", "f-00", 5), // another revision: specialized, not current
          ],
        }),
      { sender: "poolkeeper-test", logger: silentLogger() },
    );
    await nc.flush();
    expected.get("default/f-07")!.specialized = 2;
    expected.get("team-b/f-00")!.specialized = 1;
  });

  after(async () => {
    await nc?.close();
  });

  const get = (query: string): Promise<Reply> =>
    suite.reg.api.call("GET", `/v1/console/functions${query}`);
  const body = (res: Reply) => res.body as unknown as PageBody;
  // A row holds the first ROW_ITEMS of each (kind, then name: the kinds' names sort so) and counts all.
  const shown = (s: Summary) => ({
    routes: s.routes.map((r) => r.trigger),
    routesTotal: s.routesTotal,
    triggers: s.triggers.map((t) => `${t.kind}/${t.name}`),
    triggersTotal: s.triggersTotal,
    specialized: s.instances.specialized,
  });
  const sorted = (e: Expected, n: number = ROW_ITEMS.page) => ({
    routes: [...e.routes].sort().slice(0, n),
    routesTotal: e.routes.length,
    triggers: [...e.triggers].sort().slice(0, n),
    triggersTotal: e.triggers.length,
    specialized: e.specialized,
  });

  it("pages over every function exactly once, in order, each with its own routes, triggers and instances", async () => {
    const seen: string[] = [];
    let token: string | undefined;
    let pages = 0;
    do {
      const res = await get(`?limit=4${token ? `&continue=${token}` : ""}`);
      expect(res.status, JSON.stringify(res.body)).to.equal(200);
      const page = body(res);
      expect(page.instancesKnown).to.equal(true);
      expect(page.items.length).to.be.within(1, 4);
      for (const item of page.items) {
        const key = `${item.namespace}/${item.name}`;
        seen.push(key);
        expect(shown(item), key).to.deep.equal(sorted(expected.get(key)!));
      }
      token = page.continue;
      pages++;
    } while (token !== undefined && pages < 100);
    expect(token, "the last page has no token").to.equal(undefined);
    const all = [...expected.keys()].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
    expect(seen).to.deep.equal(all);
    expect(pages).to.equal(Math.ceil(all.length / 4));
    const f07 = (await get("?limit=100")).body as unknown as PageBody;
    expect(f07.items.find((i) => i.name === "f-07")?.instances).to.deep.equal({
      specialized: 2,
      current: 2,
    });
  });

  it("reads the page's functions' triggers only: an unreadable trigger of another function in the namespace is not read", async () => {
    const before = leftOut();
    // Both pages hold default's f-00..f-19 only: f-24's unreadable trigger, in the same namespace,
    // is not read (scanning the namespace's triggers read it for every page of default).
    const first = await get("?limit=10");
    expect(first.status).to.equal(200);
    const second = await get(`?limit=10&continue=${body(first).continue}`);
    expect(body(second).items.map((i) => i.name)).to.deep.equal(
      Array.from({ length: 10 }, (_, i) => `f-${10 + i}`),
    );
    expect(leftOut()).to.equal(before);
    // The page holding f-24 reads it (left out and logged), and still answers f-24's and busy's
    // triggers: what tells the two cases apart above.
    const last = await get(`?limit=${LIST_MAX_LIMIT}`);
    for (const key of ["default/f-24", "noise/busy"]) {
      const item = body(last).items.find((i) => `${i.namespace}/${i.name}` === key);
      expect(item && shown(item), key).to.deep.equal(sorted(expected.get(key)!));
    }
    expect(leftOut()).to.be.greaterThan(before);
  });

  it("reads a page's triggers a few namespace pages at a time until the function index is built", async () => {
    // The same Redis as the registry, through a store whose trigger page reads are counted while
    // in flight: each holds up to a page (1000 objects, the page budget) of one namespace's
    // triggers, so a page of functions in many namespaces read them all at once (4 kinds ×
    // namespaces: 12 here, 4,000 for a page of 1000 functions in 1000 namespaces).
    const { store, close } = await secondStore(suite.stack, "console-pages-test");
    try {
      // As a store written before the function index, until its build at start: the page scans
      // its namespaces' triggers.
      await dropFunctionIndex(suite.stack);
      let inFlight = 0;
      let most = 0;
      const counted = Object.create(store) as RedisStore;
      counted.pageJson = async (kind, req) => {
        if (kind === "functions") return store.pageJson(kind, req);
        most = Math.max(most, ++inFlight);
        try {
          return await store.pageJson(kind, req);
        } finally {
          inFlight--;
        }
      };
      const page = await consoleFunctionsPage(counted, { limit: LIST_MAX_LIMIT }, 4 << 20, () =>
        Promise.resolve({ list: [], known: false }),
      );
      expect(new Set(page.items.map((i) => i.namespace)).size).to.equal(3);
      // The same rows as the endpoint answers (the join intact); no instances were given here.
      for (const item of page.items as unknown as Summary[]) {
        const key = `${item.namespace}/${item.name}`;
        expect(shown(item), key).to.deep.equal({ ...sorted(expected.get(key)!), specialized: 0 });
      }
      expect(most).to.be.within(1, TRIGGER_SCANS_AT_ONCE);
      expect(TRIGGER_SCANS_AT_ONCE).to.be.lessThan(4 * 3);
    } finally {
      // Built again (idempotent; every write kept the sets meanwhile), marker included.
      await store.buildRouteIndex();
      await close();
    }
  });

  it("answers a first page without limit, as before when everything fits", async () => {
    const res = await get("");
    expect(res.status).to.equal(200);
    expect(body(res).continue).to.equal(undefined);
    expect(body(res).items).to.have.length(expected.size);
  });

  it("answers one function's row, from its own namespace, and 404 for one that does not exist", async () => {
    const res = await suite.reg.api.call("GET", "/v1/console/functions/team-b/f-00");
    expect(res.status, JSON.stringify(res.body)).to.equal(200);
    const one = res.body as unknown as { item: Summary; instancesKnown: boolean };
    expect(one.instancesKnown).to.equal(true);
    expect(shown(one.item)).to.deep.equal(sorted(expected.get("team-b/f-00")!, ROW_ITEMS.one));
    expect(one.item.instances).to.deep.equal({ specialized: 1, current: 0 });
    const missing = await suite.reg.api.call("GET", "/v1/console/functions/team-b/f-09");
    expect(missing.status).to.equal(404);
    expect(missing.body.error.code).to.equal("NOT_FOUND");
    const bad = await suite.reg.api.call("GET", "/v1/console/functions/Team_B/f-00");
    expect(bad.status).to.equal(400);
    expect(bad.body.error.field).to.equal("namespace");
  });

  it("refuses a bad limit or continue token with 400 naming the field", async () => {
    for (const q of [
      "?limit=0",
      `?limit=${LIST_MAX_LIMIT + 1}`,
      "?limit=abc",
      "?limit=1&limit=2",
    ]) {
      const res = await get(q);
      expect(res.status, q).to.equal(400);
      expect(res.body.error.code, q).to.equal("VALIDATION_FAILED");
      expect(res.body.error.field, q).to.equal("limit");
    }
    // A token of one namespace's listing names a position in another listing.
    const nsPage = await suite.reg.api.call("GET", "/v1/namespaces/team-b/functions?limit=1");
    const nsToken = (nsPage.body as unknown as { continue: string }).continue;
    expect(nsToken).to.be.a("string");
    for (const q of ["?continue=not-a-token!", "?continue=abc", `?continue=${nsToken}`]) {
      const res = await get(q);
      expect(res.status, q).to.equal(400);
      expect(res.body.error.code, q).to.equal("VALIDATION_FAILED");
      expect(res.body.error.field, q).to.equal("continue");
    }
  });
});
