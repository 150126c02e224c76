import { expect } from "chai";
import { Codecs, subjects, LIST_MAX_LIMIT } from "@fizz/events";
import { connectNats, request, silentLogger, type NatsConnection } from "@fizz/kit";
import {
  envBody,
  fnBody,
  registryEnv,
  startRegistry,
  startStack,
  triggerBody,
  type Running,
  type Stack,
} from "./helpers";

/** List calls page (`?limit=&continue=`, `registry.list`), and routes are checked through the route index. */
describe("registry pagination and the route index", () => {
  let stack: Stack;
  let reg: Running;
  let nc: NatsConnection;
  const s = subjects("fizz.v1");
  const api = () => reg.api.ns();
  const names = (body: { items: { metadata: { name: string } }[] }) =>
    body.items.map((i) => i.metadata.name);

  before(async () => {
    stack = await startStack();
    reg = await startRegistry(registryEnv(stack));
    nc = await connectNats({ url: stack.nats.url, name: "test", logger: silentLogger() });
    expect((await api().create("environments", envBody("py"))).status).to.equal(201);
    for (let i = 0; i < 25; i++)
      expect(
        (await api().create("functions", fnBody(`f-${String(i).padStart(2, "0")}`, "py"))).status,
      ).to.equal(201);
  });

  after(async () => {
    await nc?.close();
    await reg?.svc.stop();
    await stack?.cleanup();
  });

  const page = (kind: string, query: string) =>
    reg.api.call("GET", `/v1/namespaces/default/${kind}${query}`);

  it("answers every object without limit or continue, as before (no token)", async () => {
    const res = await api().list("functions");
    expect(res.status).to.equal(200);
    expect(res.body.items).to.have.length(25);
    expect((res.body as unknown as { continue?: string }).continue).to.equal(undefined);
  });

  it("pages in a stable order, the last page without a token", async () => {
    const seen: string[] = [];
    let token: string | undefined;
    let pages = 0;
    do {
      const res = await page("functions", `?limit=10${token ? `&continue=${token}` : ""}`);
      expect(res.status).to.equal(200);
      seen.push(...names(res.body));
      token = (res.body as unknown as { continue?: string }).continue;
      pages++;
    } while (token);
    expect(pages).to.equal(3);
    expect(seen).to.deep.equal([...seen].sort());
    expect(seen).to.deep.equal(names((await api().list("functions")).body));
  });

  it("refuses a limit out of bounds and a bad continue token, naming the parameter", async () => {
    for (const q of [
      "?limit=0",
      `?limit=${LIST_MAX_LIMIT + 1}`,
      "?limit=abc",
      "?limit=-1",
      "?limit=1&limit=2",
    ]) {
      const res = await page("functions", q);
      expect(res.status, q).to.equal(400);
      expect(res.body.error.code).to.equal("VALIDATION_FAILED");
      expect(res.body.error.field).to.equal("limit");
    }
    const foreign = Buffer.from(JSON.stringify({ v: 1, ns: "other", name: "x" })).toString(
      "base64url",
    );
    for (const q of ["?continue=not-a-token!", "?continue=abc", `?continue=${foreign}`]) {
      const res = await page("functions", q);
      expect(res.status, q).to.equal(400);
      expect(res.body.error.code).to.equal("VALIDATION_FAILED");
      expect(res.body.error.field).to.equal("continue");
    }
  });

  it("loses and repeats nothing that exists throughout while objects come and go between pages", async () => {
    const first = await page("functions", "?limit=8");
    const seen = names(first.body);
    let token = (first.body as unknown as { continue?: string }).continue;
    // Between pages: one listed already deleted, one not yet listed deleted, new ones on both sides.
    expect((await api().delete("functions", "f-03")).status).to.equal(200);
    expect((await api().delete("functions", "f-20")).status).to.equal(200);
    expect((await api().create("functions", fnBody("a-new", "py"))).status).to.equal(201);
    expect((await api().create("functions", fnBody("f-15b", "py"))).status).to.equal(201);
    while (token) {
      const res = await page("functions", `?limit=8&continue=${token}`);
      seen.push(...names(res.body));
      token = (res.body as unknown as { continue?: string }).continue;
    }
    expect(new Set(seen).size, "no repeats").to.equal(seen.length);
    for (let i = 0; i < 25; i++) {
      const name = `f-${String(i).padStart(2, "0")}`;
      if (name !== "f-20") expect(seen, name).to.include(name);
    }
    expect(seen).to.include("f-15b");
    expect(seen).to.not.include("a-new"); // created before the cursor
  });

  it("pages registry.list over NATS the same way", async () => {
    const all: string[] = [];
    let token: string | undefined;
    do {
      const reply = await request(
        nc,
        s.registryList,
        Codecs.registryList,
        { kind: "functions", limit: 7, ...(token ? { continue: token } : {}) },
        { sender: "test", timeoutMs: 5000 },
      );
      expect(reply.items.length).to.be.at.most(7);
      all.push(...reply.items.map((i) => i.metadata.name));
      token = reply.continue;
    } while (token);
    expect(all).to.deep.equal(names((await api().list("functions")).body));
    const whole = await request(
      nc,
      s.registryList,
      Codecs.registryList,
      { kind: "functions" },
      { sender: "test", timeoutMs: 5000 },
    );
    expect(whole.continue).to.equal(undefined);
    expect(whole.items.map((i) => i.metadata.name)).to.deep.equal(all);
  });

  it("checks routes through the route index: conflicts found, freed routes reusable", async () => {
    expect(
      (await api().create("httptriggers", triggerBody("r1", "f-00", { path: "/u/{id}" }))).status,
    ).to.equal(201);
    const clash = await api().create("httptriggers", triggerBody("r2", "f-01", { path: "/u/{x}" }));
    expect(clash.status).to.equal(409);
    expect(clash.body.error.code).to.equal("ROUTE_CONFLICT");
    // r1 takes every method, so a POST on the same shape conflicts too.
    expect(
      (
        await api().create(
          "httptriggers",
          triggerBody("r3", "f-01", { path: "/u/{x}", methods: ["POST"] }),
        )
      ).status,
    ).to.equal(409);
    // Moved away: the old shape is free, the new one taken.
    expect(
      (await api().patch("httptriggers", "r1", { spec: { path: "/v/{id}" } })).status,
    ).to.equal(200);
    expect(
      (await api().create("httptriggers", triggerBody("r2", "f-01", { path: "/u/{x}" }))).status,
    ).to.equal(201);
    expect(
      (await api().create("httptriggers", triggerBody("r4", "f-02", { path: "/v/{y}" }))).status,
    ).to.equal(409);
    // Deleted: its shape is free again.
    expect((await api().delete("httptriggers", "r1")).status).to.equal(200);
    expect(
      (await api().create("httptriggers", triggerBody("r4", "f-02", { path: "/v/{y}" }))).status,
    ).to.equal(201);
  });

  it("writes racing for one route on several connections: exactly one wins", async () => {
    const results = await Promise.all(
      Array.from({ length: 8 }, (_, i) =>
        api().create("httptriggers", triggerBody(`race-${i}`, "f-04", { path: "/race" })),
      ),
    );
    const statuses = results.map((r) => r.status).sort();
    expect(statuses.filter((st) => st === 201)).to.have.length(1);
    expect(statuses.filter((st) => st === 409)).to.have.length(7);
  });
});
