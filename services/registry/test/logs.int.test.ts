import { expect } from "chai";
import { waitFor } from "@fizz/testkit";
import { envBody, fnBody, READ_TOKEN, registryEnv, startRegistry, startStack } from "./helpers";
import type { Running, Stack } from "./helpers";
import { LogClient, LogPublisher } from "./logs-support";

const LOGS = "/v1/namespaces/default/functions/hello/logs";

describe("registry function logs (GET …/functions/{name}/logs)", function () {
  this.timeout(120_000);
  let stack: Stack;
  let reg: Running;
  let pub: LogPublisher;
  const open: LogClient[] = [];
  const port = () => reg.svc.port;
  const read = (query = "", token?: string | null) =>
    LogClient.read(port(), `${LOGS}${query}`, token);
  const follow = async (query = "") => {
    const c = await LogClient.open(port(), `${LOGS}?follow=true${query}`);
    open.push(c);
    return c;
  };

  before(async () => {
    stack = await startStack();
    pub = await LogPublisher.open(stack.nats.url);
    reg = await startRegistry(registryEnv(stack, { FIZZ_LOG_FOLLOWS_MAX: "2" }));
    for (const [kind, body] of [
      ["environments", envBody("python")],
      ["functions", fnBody("hello", "python")],
      ["functions", fnBody("other", "python")],
    ] as const)
      expect((await reg.api.ns().create(kind, body)).status).to.equal(201);
  });
  afterEach(async () => {
    for (const c of open.splice(0)) c.close();
    await waitFor(async () => (await pub.consumers()) === 0, { what: "no consumers left" });
  });
  after(async () => {
    await reg?.svc.stop();
    await pub?.close();
    await stack?.cleanup();
  });

  it("answers an empty NDJSON body for a function that printed nothing", async () => {
    const c = await read();
    expect(c.status).to.equal(200);
    expect(c.contentType).to.match(/^application\/x-ndjson/);
    expect(c.body).to.equal("");
  });

  it("answers the function's lines in order as LogLine NDJSON, never another function's", async () => {
    const sent = await pub.publish("hello", ["one", "two", "three"]);
    await pub.publish("other", ["not mine"]);
    const c = await read();
    expect(c.lines).to.deep.equal(sent);
  });

  it("answers only the last N lines with tail, and none with tail=0", async () => {
    const sent = await pub.publish(
      "hello",
      Array.from({ length: 40 }, (_, i) => `line ${i}`),
    );
    expect((await read("?tail=5")).lines).to.deep.equal(sent.slice(-5));
    expect((await read("?tail=0")).body).to.equal("");
  });

  it("answers only lines stored at or after since (an RFC 3339 time or a duration)", async () => {
    await pub.publish("hello", ["before"]);
    const cut = Date.now() + 1;
    await waitFor(() => Date.now() > cut, { what: "the clock to pass the cut", intervalMs: 1 });
    const after = await pub.publish("hello", ["after 1", "after 2"]);
    expect((await read(`?since=${new Date(cut).toISOString()}`)).lines).to.deep.equal(after);
    const recent = await read("?since=10m");
    expect(recent.texts()).to.include.members(["before", "after 1", "after 2"]);
    expect(recent.lines.length).to.be.greaterThan(3);
    // since with tail: the last N of those.
    expect((await read(`?since=${new Date(cut).toISOString()}&tail=1`)).lines).to.deep.equal(
      after.slice(-1),
    );
  });

  it("answers only one instance's lines with instance, the last N of them with tail", async () => {
    const mixed: string[] = [];
    for (let i = 0; i < 10; i++) mixed.push(`m${i}`);
    for (const [i, text] of mixed.entries())
      await pub.publish("hello", [text], { instanceId: i % 2 === 0 ? "inst-even" : "inst-odd" });
    const even = await read("?instance=inst-even&tail=3");
    expect(even.texts()).to.deep.equal(["m4", "m6", "m8"]);
    expect(even.lines.every((l) => l.instanceId === "inst-even")).to.equal(true);
    expect((await read("?instance=inst-none")).body).to.equal("");
  });

  it("keeps a follow open and streams a line published after the request", async () => {
    const c = await follow("&tail=0");
    expect(c.status).to.equal(200);
    const [line] = await pub.publish("hello", ["live"], { stream: "stderr", requestId: "req-1" });
    await waitFor(() => c.lines.length === 1, { what: "the live line" });
    expect(c.lines).to.deep.equal([line]);
    expect(c.ended).to.equal(false);
  });

  it("refuses the read-only token (403 FORBIDDEN, like downloading code): what functions print is user data", async () => {
    await pub.publish("hello", ["a user's address"]);
    for (const query of ["?tail=5", "?follow=true", "?tail=not-a-number"]) {
      const c = await read(query, READ_TOKEN);
      expect(c.status, query).to.equal(403);
      expect(c.error(), query).to.include({ code: "FORBIDDEN", field: "Authorization" });
      expect(c.body, query).to.not.include("a user's address");
    }
    expect((await read("?tail=1")).texts()).to.deep.equal(["a user's address"]);
  });

  it("follows from the tail of the history without losing or repeating a line", async () => {
    const history = await pub.publish("hello", ["h1", "h2"]);
    const c = await follow("&tail=2");
    await waitFor(() => c.lines.length === 2, { what: "the history" });
    const live = await pub.publish("hello", ["l1", "l2"]);
    await waitFor(() => c.lines.length === 4, { what: "the live lines" });
    expect(c.lines).to.deep.equal([...history, ...live]);
  });

  it("removes its JetStream consumer when the client disconnects", async () => {
    const c = await follow("&tail=0");
    await waitFor(async () => (await pub.consumers()) === 1, { what: "the follow's consumer" });
    c.close();
    await waitFor(async () => (await pub.consumers()) === 0, { what: "the consumer removed" });
  });

  it("answers 503 NO_CAPACITY past FIZZ_LOG_FOLLOWS_MAX follows, and takes a new one when one ends", async () => {
    const a = await follow();
    const b = await follow();
    expect([a.status, b.status]).to.deep.equal([200, 200]);
    const third = await LogClient.read(port(), `${LOGS}?follow=true`);
    expect(third.status).to.equal(503);
    expect(third.error().code).to.equal("NO_CAPACITY");
    expect(third.error().message).to.match(/FIZZ_LOG_FOLLOWS_MAX/);
    // Reads that end are not follows: still served.
    expect((await read("?tail=1")).status).to.equal(200);
    a.close();
    await waitFor(
      async () => {
        const c = await follow();
        if (c.status === 200) return true;
        c.close();
        return false;
      },
      { what: "a follow accepted again" },
    );
  });

  for (const [query, field] of [
    ["?since=yesterday", "since"],
    ["?since=10", "since"],
    ["?since=2026-13-45T99:00:00Z", "since"],
    ["?tail=-1", "tail"],
    ["?tail=10001", "tail"],
    ["?tail=1.5", "tail"],
    ["?tail=1&tail=2", "tail"],
    ["?instance=a%20b", "instance"],
    ["?instance=a.b%3E", "instance"],
    ["?follow=maybe", "follow"],
    ["?lines=3", "lines"],
  ] as const)
    it(`answers 400 VALIDATION_FAILED naming ${field} for ${query}`, async () => {
      const c = await read(query);
      expect(c.status, c.body).to.equal(400);
      expect(c.error()).to.include({ code: "VALIDATION_FAILED", field });
    });

  it("answers 404 for an unknown function and 400 for a name that is not a subject token", async () => {
    const missing = await LogClient.read(port(), "/v1/namespaces/default/functions/nope/logs");
    expect(missing.status).to.equal(404);
    expect(missing.error().code).to.equal("NOT_FOUND");
    for (const bad of ["hel*lo", "a.b", "%3E"]) {
      const c = await LogClient.read(port(), `/v1/namespaces/default/functions/${bad}/logs`);
      expect(c.status, bad).to.equal(400);
    }
  });

  it("answers 401 without a token and streams nothing", async () => {
    await pub.publish("hello", ["secret-ish"]);
    const c = await read("", null);
    expect(c.status).to.equal(401);
    expect(c.error().code).to.equal("UNAUTHENTICATED");
    expect(c.body).to.not.include("secret-ish");
    const f = await LogClient.read(port(), `${LOGS}?follow=true`, "not-the-token-0123456789");
    expect(f.status).to.equal(401);
  });
});
