import { expect } from "chai";
import { Codecs, FizzError, subjects } from "@fizz/events";
import { connectNats, request, silentLogger, type NatsConnection } from "@fizz/kit";
import {
  envBody,
  fnBody,
  registryEnv,
  startRegistry,
  startStack,
  type Running,
  type Stack,
} from "./helpers";

const PAGE_BYTES = 32 * 1024;
const ALL_BYTES = 128 * 1024;

/** Environment variables of about `bytes` in all (a value holds at most 32 KB). */
function bigEnv(bytes: number): Record<string, string> {
  const vars: Record<string, string> = {};
  for (let i = 0; bytes > 0; i++, bytes -= 4000) vars[`V${i}`] = "x".repeat(Math.min(4000, bytes));
  return vars;
}

/** Mixed sizes, one in four larger than a whole page's budget (it must come out alone). */
const SIZES = [0, 6_000, 14_000, 40_000];

interface Page {
  items: { metadata: { name: string } }[];
  continue?: string;
}

/**
 * List answers have a byte budget (list-params.ts ListBounds): a REST page ends before the object
 * that would take it past FIZZ_LIST_PAGE_MAX_BYTES, whatever its `limit` (it used to answer all
 * `limit` objects: 1,000 objects of 1.4 MB were a 1.4 GB answer), always with at least one object,
 * and its token resumes right after the last one answered; a listing without paging is refused
 * past FIZZ_LIST_ALL_MAX_BYTES (REST) or half max_payload (`registry.list`, whose reply could not
 * be sent at all) with LIST_TOO_LARGE, naming `limit`.
 */
describe("registry list answers' byte budget", () => {
  let stack: Stack;
  let reg: Running;
  let nc: NatsConnection;
  const stable: string[] = [];
  const api = () => reg.api.ns();

  before(async () => {
    stack = await startStack();
    reg = await startRegistry(
      registryEnv(stack, {
        FIZZ_LIST_PAGE_MAX_BYTES: String(PAGE_BYTES),
        FIZZ_LIST_ALL_MAX_BYTES: String(ALL_BYTES),
      }),
    );
    nc = await connectNats({ url: stack.nats.url, name: "test", logger: silentLogger() });
    expect((await api().create("environments", envBody("py"))).status).to.equal(201);
    // ~1.2 MB in all: over both unpaginated bounds (128 KiB; NATS: 1 MB less 64 KiB).
    for (let i = 0; i < 80; i++) {
      const name = `f-${String(i).padStart(2, "0")}`;
      const env = bigEnv(SIZES[i % SIZES.length]!);
      const res = await api().create("functions", fnBody(name, "py", { env }));
      expect(res.status, JSON.stringify(res.body).slice(0, 200)).to.equal(201);
      stable.push(name);
    }
  });

  after(async () => {
    await nc?.close();
    await reg?.svc.stop();
    await stack?.cleanup();
  });

  const page = async (limit: number, token?: string): Promise<Page> => {
    const q = `?limit=${limit}${token ? `&continue=${token}` : ""}`;
    const res = await reg.api.call("GET", `/v1/namespaces/default/functions${q}`);
    expect(res.status, JSON.stringify(res.body).slice(0, 300)).to.equal(200);
    return res.body;
  };
  const bytesOf = (item: unknown) => Buffer.byteLength(JSON.stringify(item));

  /** Follows pages to the end; `between` runs after each page. Answers the pages' names. */
  const pageAll = async (between?: (n: number) => Promise<void>): Promise<string[][]> => {
    const pages: string[][] = [];
    let token: string | undefined;
    do {
      const p = await page(1000, token);
      const sizes = p.items.map(bytesOf);
      const total = sizes.reduce((a, b) => a + b, 0);
      // Within the budget, or one object alone (it may be larger than a whole page's budget).
      if (p.items.length > 1) expect(total, `page ${pages.length}`).to.be.at.most(PAGE_BYTES);
      expect(p.items.length, `page ${pages.length}`).to.be.at.least(1);
      if (sizes.some((s) => s > PAGE_BYTES)) expect(p.items).to.have.length(1);
      pages.push(p.items.map((i) => i.metadata.name));
      expect(p.continue, "a token given back").to.not.equal(token);
      token = p.continue;
      await between?.(pages.length);
    } while (token !== undefined && pages.length < 200);
    expect(token, "pages end").to.equal(undefined);
    return pages;
  };

  it("cuts a page of large objects by bytes, the continuation answering each object once", async () => {
    const pages = await pageAll();
    expect(pages.length).to.be.greaterThan(10);
    expect(pages.flat()).to.deep.equal(stable);
  });

  it("answers an object larger than the whole budget alone, and goes on after it", async () => {
    // f-03 is ~40 KB, over the 32 KiB budget: the page after f-02 holds it alone.
    let token: string | undefined;
    let p: Page;
    do {
      p = await page(1000, token);
      token = p.continue;
    } while (!p.items.some((i) => i.metadata.name === "f-03"));
    expect(p.items.map((i) => i.metadata.name)).to.deep.equal(["f-03"]);
    expect((await page(1000, token)).items[0]!.metadata.name).to.equal("f-04");
  });

  it("lists every object present throughout exactly once while others are created and deleted", async () => {
    const churn = async (n: number, prefix: string) => {
      const env = bigEnv(SIZES[n % SIZES.length]!);
      const res = await api().create("functions", fnBody(`${prefix}-${n}`, "py", { env }));
      expect(res.status).to.equal(201);
    };
    for (let n = 0; n < 12; n++) await churn(n, "c");
    const pages = await pageAll(async (n) => {
      // Removes one created before the listing and adds one on each side of the cursor.
      if (n < 12) expect((await api().delete("functions", `c-${n}`)).status).to.equal(200);
      await churn(n, "a");
      await churn(n, "z");
    });
    const seen = pages.flat();
    expect(new Set(seen).size, "no object twice").to.equal(seen.length);
    expect(seen.filter((n) => n.startsWith("f-"))).to.deep.equal(stable);
    expect(seen).to.deep.equal([...seen].sort());
  });

  it("refuses an unpaginated REST listing past FIZZ_LIST_ALL_MAX_BYTES, telling the caller to page", async () => {
    const res = await api().list("functions");
    expect(res.status).to.equal(400);
    expect(res.body.error.code).to.equal("LIST_TOO_LARGE");
    expect(res.body.error.field).to.equal("limit");
    expect(res.body.error.message).to.contain(String(ALL_BYTES)).and.to.contain("continue");
    // A small kind still lists whole, without a token, as before.
    const envs = await api().list("environments");
    expect(envs.status).to.equal(200);
    expect(envs.body.items).to.have.length(1);
  });

  it("keeps every registry.list page under max_payload and refuses an unpaginated reply past it", async () => {
    const max = nc.info!.max_payload;
    const subject = subjects("fizz.v1").registryList;
    const seen: string[] = [];
    let token: string | undefined;
    do {
      const req = {
        kind: "functions" as const,
        limit: 1000,
        ...(token ? { continue: token } : {}),
      };
      const msg = await nc.request(subject, Codecs.registryList.request.encode(req, "test"), {
        timeout: 10_000,
      });
      expect(msg.data.length).to.be.at.most(max);
      const reply = Codecs.registryList.reply.decode(msg.data).data;
      seen.push(...reply.items.map((o) => o.metadata.name));
      token = reply.continue;
    } while (token !== undefined && seen.length < 1000);
    expect(seen.filter((n) => n.startsWith("f-"))).to.deep.equal(stable);
    const err = await request(
      nc,
      subject,
      Codecs.registryList,
      { kind: "functions" },
      { sender: "test", timeoutMs: 5_000 },
    ).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).to.be.instanceOf(FizzError);
    expect((err as FizzError).code).to.equal("LIST_TOO_LARGE");
    expect((err as FizzError).message).to.contain(String(max - 64 * 1024));
  });

  it("still refuses a bad limit as before", async () => {
    for (const q of ["?limit=0", "?limit=1001", "?limit=x"]) {
      const res = await reg.api.call("GET", `/v1/namespaces/default/functions${q}`);
      expect(res.status, q).to.equal(400);
      expect(res.body.error.code, q).to.equal("VALIDATION_FAILED");
      expect(res.body.error.field, q).to.equal("limit");
    }
  });
});
