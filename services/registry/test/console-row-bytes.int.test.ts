import { DEFAULT_REDIS_PREFIX } from "@fizz/events";
import { expect } from "chai";
import { consoleFunctionSummary, consoleFunctionsPage } from "../src/console-functions";
import { fnIndexBuiltKey } from "../src/function-index";
import { mqtBody } from "./helpers";
import {
  createFunctions,
  created,
  dropFunctionIndex,
  registrySuite,
  secondStore,
} from "./registry-suite";

interface Row {
  name: string;
  triggers: { name: string }[];
  triggersTotal: number;
  triggersMore: boolean;
}

const TRIGGERS = 10;
/** Labels of ~45 KB: a trigger's text can be megabytes (labels are not bounded in number). */
const labels = Object.fromEntries(
  Array.from({ length: 600 }, (_, i) => [`l-${String(i).padStart(4, "0")}`, "x".repeat(63)]),
);
const BUDGET = 100_000;
const none = () => Promise.resolve({ list: [], known: false });

/**
 * A console row holds a few triggers (ROW_ITEMS), but a count bound is no byte bound: the joined
 * triggers' texts were all read and held (in MGETs of 500 keys), so a page's or a function's
 * triggers of megabytes each cost the registry that many megabytes per view. They are read within
 * the page's byte budget now, in chunks sized by it (as listing pages are); a row past it shows
 * fewer, its count and `triggersMore` unchanged.
 */
describe("registry console rows: the joined triggers' bytes are bounded (real NATS and Redis)", function () {
  this.timeout(120_000);
  const suite = registrySuite();

  before(async () => {
    await createFunctions(suite.reg.api, "default", "py", ["big"]);
    for (let i = 0; i < TRIGGERS; i++)
      await created(suite.reg.api, "default", "mqtriggers", {
        ...mqtBody(`m-${i}`, "big"),
        labels,
      });
  });

  /** A store whose texts read (MGET) are summed. */
  const measured = async () => {
    const s = await secondStore(suite.stack, "console-row-bytes-test");
    const client = (s.store as unknown as { opts: { client: Record<string, unknown> } }).opts
      .client;
    const mget = (client.mgetBuffer as (...k: string[]) => Promise<(Buffer | null)[]>).bind(client);
    let read = 0;
    client.mgetBuffer = async (...k: string[]) => {
      const values = await mget(...k);
      for (const v of values) read += v?.length ?? 0;
      return values;
    };
    return { ...s, read: () => read };
  };

  const check = (row: Row | undefined, read: number) => {
    const size = JSON.stringify(labels).length;
    expect(row?.triggers.length, "triggers shown").to.be.within(1, Math.ceil(BUDGET / size));
    expect(row?.triggersTotal).to.equal(TRIGGERS);
    expect(row?.triggersMore).to.equal(true);
    // The page's functions, and the trigger texts of about the budget (one chunk past it at most).
    expect(read, "bytes read").to.be.below(BUDGET + 4 * size);
  };

  it("reads a function's row's trigger texts within the byte budget, counting the rest", async () => {
    const s = await measured();
    try {
      const found = await consoleFunctionSummary(s.store, "default", "big", BUDGET, none);
      check(found?.item as Row | undefined, s.read());
    } finally {
      await s.close();
    }
  });

  it("the same through the namespace scan, before the function index is built", async () => {
    await dropFunctionIndex(suite.stack);
    const s = await measured();
    try {
      const page = await consoleFunctionsPage(s.store, { limit: 10 }, BUDGET, none);
      const row = page.items.find((r) => r.name === "big") as Row | undefined;
      // The scan reads every trigger of the namespace (pages within the budget): what it keeps is
      // what is bounded here.
      expect(row?.triggers.length, "triggers shown").to.be.within(1, 3);
      expect(row?.triggersTotal).to.equal(TRIGGERS);
    } finally {
      await s.close();
      await suite.stack.client.set(fnIndexBuiltKey(DEFAULT_REDIS_PREFIX), "1");
    }
  });
});
