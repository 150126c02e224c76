import { DEFAULT_REDIS_PREFIX } from "@fizz/events";
import { expect } from "chai";
import { ROW_ITEMS } from "../src/console-functions";
import { fnIndexBuiltKey } from "../src/function-index";
import { mqtBody, timerBody, triggerBody } from "./helpers";
import { consoleRow, createFunctions, dropFunctionIndex, registrySuite } from "./registry-suite";

interface Row {
  name: string;
  routes: { trigger: string }[];
  triggers: { kind: string; name: string }[];
  routesTotal: number;
  routesMore: boolean;
  triggersTotal: number;
  triggersMore: boolean;
}

const MQ = ROW_ITEMS.one + 30;
const TIMERS = 3;
const ROUTES = ROW_ITEMS.page + 4;
const name = (prefix: string, i: number) => `${prefix}-${String(i).padStart(4, "0")}`;

/**
 * A console row holds at most ROW_ITEMS routes and triggers (fewer in a page of rows than alone),
 * the first by kind then name, with the totals and a flag that more exist: a function with 50,000
 * triggers made one row, and the one-row answer, hold all of them.
 */
describe("registry console rows are bounded (real NATS and Redis)", function () {
  this.timeout(120_000);
  const suite = registrySuite();

  before(async () => {
    const api = suite.reg.api.ns("default");
    const ok = async (p: Promise<{ status: number }>): Promise<void> => {
      expect((await p).status).to.equal(201);
    };
    await createFunctions(suite.reg.api, "default", "py", ["busy", "quiet"]);
    await ok(api.create("mqtriggers", mqtBody("quiet-mq", "quiet")));
    const jobs: (() => Promise<void>)[] = [];
    for (let i = 0; i < MQ; i++)
      jobs.push(() => ok(api.create("mqtriggers", mqtBody(name("m", i), "busy"))));
    for (let i = 0; i < TIMERS; i++)
      jobs.push(() => ok(api.create("timetriggers", timerBody(name("t", i), "busy"))));
    for (let i = 0; i < ROUTES; i++)
      jobs.push(() => ok(api.create("httptriggers", triggerBody(name("r", i), "busy"))));
    // A few at a time: the writes are transactions on one store.
    for (let i = 0; i < jobs.length; i += 8)
      await Promise.all(jobs.slice(i, i + 8).map((j) => j()));
  });

  const pageRows = async (): Promise<Row[]> => {
    const res = await suite.reg.api.call("GET", "/v1/console/functions?limit=10");
    expect(res.status).to.equal(200);
    return (res.body as unknown as { items: Row[] }).items;
  };
  const oneRow = (fn: string) => consoleRow<Row>(suite.reg.api, "default", fn);
  const names = (items: { name?: string; trigger?: string }[]) =>
    items.map((t) => t.name ?? t.trigger);

  const checkBounded = (row: Row | undefined, n: number) => {
    expect(row, "busy's row").to.not.equal(undefined);
    if (!row) return;
    expect(row.triggers).to.have.length(n);
    // Kind order (mq, time, watch), then name order: the first n mq triggers.
    expect(names(row.triggers)).to.deep.equal(Array.from({ length: n }, (_, i) => name("m", i)));
    expect(row.triggersTotal).to.equal(MQ + TIMERS);
    expect(row.triggersMore).to.equal(true);
    const routes = Math.min(n, ROUTES);
    expect(names(row.routes)).to.deep.equal(Array.from({ length: routes }, (_, i) => name("r", i)));
    expect(row.routesTotal).to.equal(ROUTES);
    expect(row.routesMore).to.equal(routes < ROUTES);
  };

  const checkQuiet = (row: Row | undefined) => {
    expect(row).to.deep.include({
      routes: [],
      routesTotal: 0,
      routesMore: false,
      triggersTotal: 1,
      triggersMore: false,
    });
    expect(names(row?.triggers ?? [])).to.deep.equal(["quiet-mq"]);
  };

  it("a page's row holds at most ROW_ITEMS.page routes and triggers and counts the rest", async () => {
    const rows = await pageRows();
    checkBounded(
      rows.find((r) => r.name === "busy"),
      ROW_ITEMS.page,
    );
    checkQuiet(rows.find((r) => r.name === "quiet"));
  });

  it("the one-function row holds at most ROW_ITEMS.one and counts the rest", async () => {
    checkBounded(await oneRow("busy"), ROW_ITEMS.one);
    checkQuiet(await oneRow("quiet"));
  });

  it("bounded the same while the function index is not built (the namespace scan)", async () => {
    await dropFunctionIndex(suite.stack);
    try {
      const rows = await pageRows();
      checkBounded(
        rows.find((r) => r.name === "busy"),
        ROW_ITEMS.page,
      );
      checkQuiet(rows.find((r) => r.name === "quiet"));
      checkBounded(await oneRow("busy"), ROW_ITEMS.one);
    } finally {
      await suite.stack.client.set(fnIndexBuiltKey(DEFAULT_REDIS_PREFIX), "1");
    }
  });
});
