import { expect } from "chai";
import { chmodSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { connect, createInbox, type NatsConnection } from "@nats-io/transport-node";
import { natsConnectionOptions } from "@fizz/kit";
import { startPlatform, type Platform } from "./helpers";
import { dumpLogsOnFailure, eventually, fizzOk } from "./probes";

/**
 * The bus-originated paths through the real platform and CLI: a NATS subject trigger answering
 * requests, a timer firing, and an async call with its status lookup, all served by a real Node
 * instance. (Each mechanism's edge cases are in the gateway's and scheduler's integration suites.)
 */
describe("triggers on the bus, end to end", function () {
  this.timeout(120_000);
  let p: Platform;
  let nc: NatsConnection;
  afterEach(dumpLogsOnFailure(() => p, 150));

  // The function appends every call to a file the test reads: the process backend runs it here.
  // Instances run as an unprivileged user when the tests run as root: they cannot write into the
  // test's own (owner-only) work dir, so the log lives in a directory they may write.
  const callsDir = mkdtempSync(path.join(tmpdir(), "fizz-bus-calls-"));
  chmodSync(callsDir, 0o777);
  const callsFile = () => path.join(callsDir, "calls.log");
  const recorder = (file: string) => `
const fs = require("fs");
module.exports = async (ctx) => {
  const line = JSON.stringify({ method: ctx.method, source: ctx.headers["x-fizz-source"] || null, trigger: ctx.headers["x-fizz-trigger"] || null, scheduled: ctx.headers["x-fizz-scheduled-time"] || null, body: ctx.request.rawBody.toString() });
  fs.appendFileSync(${JSON.stringify(file)}, line + "\\n");
  return { status: 200, headers: { "x-answered-by": "recorder" }, body: "got " + ctx.request.rawBody.toString() };
};
`;
  const calls = () => {
    try {
      return readFileSync(callsFile(), "utf8")
        .trim()
        .split("\n")
        .filter(Boolean)
        .map(
          (l) =>
            JSON.parse(l) as {
              method: string;
              source: string | null;
              trigger: string | null;
              scheduled: string | null;
              body: string;
            },
        );
    } catch {
      return [];
    }
  };

  before(async () => {
    p = await startPlatform();
    nc = await connect(p.appNats);
    await p.file("recorder.js", recorder(callsFile()));
    await fizzOk(p, "env create --name nodejs --image fizz/env-node");
    await fizzOk(p, "fn create --name recorder --env nodejs --code recorder.js");
  });
  after(async () => {
    await nc?.close();
    await p?.stop();
    rmSync(callsDir, { recursive: true, force: true });
  });

  it("answers a NATS request on a subject trigger with the function's response", async () => {
    await fizzOk(
      p,
      "mqt create --name greet --function recorder --subject demo.greet --content-type text/plain",
    );
    const reply = await eventually(
      "the subject trigger answers",
      async () => {
        try {
          return await nc.request("demo.greet", new TextEncoder().encode("hello over nats"), {
            timeout: 3000,
          });
        } catch {
          return undefined;
        }
      },
      20_000,
      200,
    );
    expect(new TextDecoder().decode(reply.data)).to.equal("got hello over nats");
    expect(reply.headers?.get("Fizz-Status")).to.equal("200");
  });

  it("never answers on a reply subject inside the platform: the gateway is no confused deputy", async () => {
    // NATS does not check a publisher's rights on the reply field: the app user names a platform
    // subject as its "reply", hoping the gateway publishes the answer there with its own rights.
    const scheduler = await connect(natsConnectionOptions(p.natsUrlAs("scheduler")));
    try {
      const forged = scheduler.subscribe("fizz.v1.scheduler.forged");
      const got: string[] = [];
      void (async () => {
        for await (const m of forged) got.push(m.string());
      })();
      await scheduler.flush();
      const inbox = createInbox();
      const control = nc.subscribe(inbox, { max: 1 });
      nc.publish("demo.greet", new TextEncoder().encode("attack"), {
        reply: "fizz.v1.scheduler.forged",
      });
      nc.publish("demo.greet", new TextEncoder().encode("control"), { reply: inbox });
      for await (const m of control) expect(m.string()).to.equal("got control");
      await new Promise((r) => setTimeout(r, 500));
      await scheduler.flush();
      expect(got).to.deep.equal([]);
      expect(
        calls().some((c) => c.body === "attack"),
        "the function still ran",
      ).to.equal(true);
    } finally {
      await scheduler.close();
    }
  });

  it("accepts an async call with 202 and a call id, and reports its result", async () => {
    const res = await fetch(`${p.gatewayUrl}/async-function/recorder`, {
      method: "POST",
      body: "later please",
    });
    expect(res.status).to.equal(202);
    const callId = res.headers.get("x-call-id");
    expect(callId).to.be.a("string").and.not.equal("");
    const status = await eventually(
      "the async call succeeded",
      async () => {
        const r = await fetch(`${p.gatewayUrl}/async-function/recorder/${callId}`);
        const s = (await r.json()) as { state: string; status?: number; body?: string };
        return s.state === "succeeded" ? s : undefined;
      },
      20_000,
      200,
    );
    expect(status.status).to.equal(200);
    expect(status.body).to.equal("got later please");
    const unknown = await fetch(`${p.gatewayUrl}/async-function/no-such-fn`, {
      method: "POST",
      body: "x",
    });
    expect(unknown.status).to.equal(404);
  });

  it("fires a timer through the invocation stream", async () => {
    const created = await p.fizz(
      "timer",
      "create",
      "--name",
      "every-second",
      "--function",
      "recorder",
      "--cron",
      "@every 1s",
    );
    expect(created.code, created.stderr).to.equal(0);
    const fired = await eventually(
      "the timer fired twice",
      () => {
        const t = calls().filter((c) => c.source === "timer" && c.trigger === "every-second");
        return t.length >= 2 ? t : undefined;
      },
      20_000,
      200,
    );
    expect(fired[0]!.method).to.equal("POST");
    // Each firing names its tick: distinct whole seconds (one firing per tick).
    const ticks = fired.map((c) => c.scheduled);
    expect(new Set(ticks).size).to.equal(ticks.length);
    for (const t of ticks) expect(t).to.match(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.000Z$/);
    await fizzOk(p, "timer delete --name every-second");
  });
});
