import type http from "node:http";
import { expect } from "chai";
import { Codecs, type DeadLetter } from "@fizz/events";
import type { Subscription } from "@fizz/kit";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { headers as natsHeaders, type Msg } from "@nats-io/transport-node";
import { waitFor } from "@fizz/testkit";
import { mqTrigger, reply, startBusWorld, withBody, type BusWorld, type Seen } from "./bus-harness";
import {
  closeClients,
  functionObject,
  leaseOf,
  startInstance,
  subj,
  type Instance,
} from "./harness";

/**
 * Message-queue triggers on a real nats-server: core NATS (queue group, direct call, functions
 * answering NATS requests, response and error subjects) and JetStream (stream and durable consumer
 * created, retries with back-off, dead letters), and the update barrier for mq triggers.
 */
describe("message-queue triggers (real NATS)", function () {
  this.timeout(60_000);
  let w: BusWorld;
  const instances: Instance[] = [];
  const seen = new Map<string, Seen[]>();
  const collected = new Map<string, Msg[]>();
  const subs: Subscription[] = [];
  /** Collects what arrives on a subject. */
  const collect = (subject: string) => {
    const list: Msg[] = [];
    collected.set(subject, list);
    subs.push(w.nc.subscribe(subject, { callback: (_e, m) => void list.push(m) }));
    return list;
  };
  const fnInstance = async (fn: string, respond: (s: Seen, res: http.ServerResponse) => void) => {
    const inst = await startInstance(
      `${fn}-1`,
      withBody((req, body, res) => {
        const s: Seen = {
          method: req.method ?? "",
          url: req.url ?? "",
          headers: req.headers,
          body,
        };
        const list = seen.get(fn) ?? [];
        list.push(s);
        seen.set(fn, list);
        respond(s, res);
      }),
    );
    instances.push(inst);
    w.leases.set(fn, () => leaseOf(inst, fn));
  };

  before(async () => {
    w = await startBusWorld({
      functions: ["echo", "fails", "late"].map((n) => functionObject(n)),
      mqtriggers: [
        mqTrigger("orders", {
          function: "echo",
          subject: "orders.*",
          responseSubject: "orders-done",
          errorSubject: "orders-failed",
        }),
        mqTrigger("jobs", {
          function: "fails",
          subject: "jobs.run",
          stream: "JOBS",
          maxRetries: 2,
          errorSubject: "jobs-failed",
          responseSubject: "jobs-done",
        }),
      ],
    });
    await fnInstance("echo", (s, res) => {
      if (s.body === "please fail") return reply(res, 500, "failed as asked");
      reply(res, 200, `echo:${s.body}`, { "x-echo-subject": String(s.headers["x-fizz-subject"]) });
    });
    await fnInstance("fails", (s, res) =>
      s.body === "good" ? reply(res, 200, "done") : reply(res, 503, "down"),
    );
    await w.startGateway();
    // The barrier's question waits for the gateway's first trigger load: everything runs after it.
    const loaded = await w.sync({
      kind: "mqtriggers",
      op: "updated",
      namespace: "default",
      name: "jobs",
      revision: 1,
    });
    expect(loaded.applied).to.equal(true);
  });
  after(async () => {
    closeClients();
    for (const s of subs) s.unsubscribe();
    await w?.close();
    await Promise.all(instances.map((i) => i.close()));
  });

  it("core NATS: a request is answered by the function, headers both ways", async () => {
    const h = natsHeaders();
    h.set("X-Order", "77");
    const res = await w.nc.request("orders.new", Buffer.from("hi"), { timeout: 5000, headers: h });
    expect(Buffer.from(res.data).toString()).to.equal("echo:hi");
    expect(res.headers?.get("Fizz-Status")).to.equal("200");
    expect(res.headers?.get("x-echo-subject")).to.equal("orders.new");
    const s = seen.get("echo")?.at(-1) as Seen;
    expect(s.method).to.equal("POST");
    expect(s.headers).to.include({
      "x-order": "77",
      "content-type": "application/json",
      "x-fizz-trigger": "orders",
      "x-fizz-function-name": "echo",
    });
  });

  it("core NATS: without a reply subject, answers go to the response subject, failures to the error subject", async () => {
    const done = collect("orders-done");
    const failed = collect("orders-failed");
    await w.nc.flush();
    w.nc.publish("orders.one", Buffer.from("one"));
    w.nc.publish("orders.two", Buffer.from("please fail"));
    await waitFor(() => done.length === 1 && failed.length === 1, {
      timeoutMs: 5000,
      what: "both answers",
    });
    expect(Buffer.from(done[0]!.data).toString()).to.equal("echo:one");
    expect(done[0]!.headers?.get("Fizz-Status")).to.equal("200");
    expect(Buffer.from(failed[0]!.data).toString()).to.equal("failed as asked");
    expect(failed[0]!.headers?.get("Fizz-Status")).to.equal("500");
  });

  it("core NATS: an unknown function answers the request with a NOT_FOUND error", async () => {
    const t = mqTrigger("ghost", { function: "nobody", subject: "ghost.calls" });
    w.mqtriggers.push(t);
    expect(
      await w.sync({
        kind: "mqtriggers",
        op: "created",
        namespace: "default",
        name: "ghost",
        revision: 1,
      }),
    ).to.include({ applied: true });
    const res = await w.nc.request("ghost.calls", Buffer.from("x"), { timeout: 5000 });
    expect(res.headers?.get("Fizz-Status")).to.equal("404");
    const body = JSON.parse(Buffer.from(res.data).toString()) as { error: { code: string } };
    expect(body.error.code).to.equal("NOT_FOUND");
  });

  it("JetStream: creates the stream and a durable consumer, retries with back-off, then dead-letters", async () => {
    const jsm = await jetstreamManager(w.nc);
    const info = await jsm.streams.info("JOBS");
    expect(info.config.subjects).to.deep.equal(["jobs.run"]);
    const consumer = await jsm.consumers.info("JOBS", "fizz-mqt-default-jobs");
    expect(consumer.config.filter_subject).to.equal("jobs.run");

    const dead: DeadLetter[] = [];
    subs.push(
      w.nc.subscribe(subj.dead("default", "fails"), {
        callback: (_e, m) => void dead.push(Codecs.dead.decode(m.data).data),
      }),
    );
    const failed = collect("jobs-failed");
    const done = collect("jobs-done");
    await w.nc.flush();
    const js = jetstream(w.nc);
    await js.publish("jobs.run", Buffer.from("bad"));
    await js.publish("jobs.run", Buffer.from("good"));
    await waitFor(() => dead.length === 1 && done.length === 1, {
      timeoutMs: 15_000,
      what: "dead letter and answer",
    });
    // maxRetries 2: three attempts, each a redelivery of the same message.
    const bad = (seen.get("fails") ?? []).filter((s) => s.body === "bad");
    expect(bad.map((s) => s.headers["x-fizz-call-id"])).to.deep.equal(
      Array(3).fill(bad[0]?.headers["x-fizz-call-id"]),
    );
    expect(dead[0]).to.deep.include({ attempts: 3, status: 503 });
    expect(dead[0]!.invocation).to.include({ source: "mqt", trigger: "jobs", function: "fails" });
    expect(Buffer.from(dead[0]!.invocation.body, "base64").toString()).to.equal("bad");
    await waitFor(() => failed.length === 1, { timeoutMs: 5000 });
    expect(Buffer.from(failed[0]!.data).toString()).to.equal("down");
    expect(failed[0]!.headers?.get("Fizz-Status")).to.equal("503");
    expect(Buffer.from(done[0]!.data).toString()).to.equal("done");
    // Both messages acked: nothing left for the consumer.
    await waitFor(
      async () => (await jsm.consumers.info("JOBS", "fizz-mqt-default-jobs")).num_ack_pending === 0,
      {
        timeoutMs: 5000,
      },
    );
    expect((await jsm.consumers.info("JOBS", "fizz-mqt-default-jobs")).num_pending).to.equal(0);
  });

  it("update barrier: a created trigger is subscribed before the gateway says applied, a deleted one is gone", async () => {
    await fnInstance("late", (s, res) => reply(res, 200, `late:${s.body}`));
    const t = mqTrigger("late", { function: "late", subject: "late.in" });
    w.mqtriggers.push(t); // no change event: only the barrier's question
    const applied = await w.sync({
      kind: "mqtriggers",
      op: "created",
      namespace: "default",
      name: "late",
      revision: 1,
    });
    expect(applied.applied).to.equal(true);
    const res = await w.nc.request("late.in", Buffer.from("now"), { timeout: 5000 });
    expect(Buffer.from(res.data).toString()).to.equal("late:now");

    w.mqtriggers.splice(w.mqtriggers.indexOf(t), 1);
    const gone = await w.sync({
      kind: "mqtriggers",
      op: "deleted",
      namespace: "default",
      name: "late",
      revision: 1,
    });
    expect(gone.applied).to.equal(true);
    try {
      await w.nc.request("late.in", Buffer.from("again"), { timeout: 1000 });
      expect.fail("answered after the trigger was deleted");
    } catch (err) {
      expect(String(err)).to.match(/no responders|503|timeout/i);
    }
  });

  it("update barrier: a create whose event already started that incarnation is answered without asking the registry", async () => {
    await fnInstance("early", (s, res) => reply(res, 200, `early:${s.body}`));
    const f = functionObject("early");
    w.functions.push(f);
    w.changed("functions", "created", f);
    const t = mqTrigger("early", { function: "early", subject: "early.in" });
    w.mqtriggers.push(t);
    w.changed("mqtriggers", "created", t);
    await waitFor(
      async () => {
        try {
          const res = await w.nc.request("early.in", Buffer.from("x"), { timeout: 500 });
          return Buffer.from(res.data).toString() === "early:x";
        } catch {
          return false;
        }
      },
      { timeoutMs: 5000, what: "the event applied" },
    );
    const req = { kind: "mqtriggers", op: "created", namespace: "default", name: "early" } as const;
    let gets = w.gets();
    expect((await w.sync({ ...req, revision: 1, uid: t.metadata.uid })).applied).to.equal(true);
    expect(w.gets()).to.equal(gets);
    // Another incarnation, or no uid (an older registry): asked.
    gets = w.gets();
    expect((await w.sync({ ...req, revision: 1, uid: "uid-another" })).applied).to.equal(true);
    expect((await w.sync({ ...req, revision: 1 })).applied).to.equal(true);
    expect(w.gets()).to.equal(gets + 2);
  });

  it("follows change events: an updated subject moves the subscription", async () => {
    const i = w.mqtriggers.findIndex((t) => t.metadata.name === "orders");
    const updated = mqTrigger("orders", { function: "echo", subject: "orders2.*" }, 2);
    w.mqtriggers[i] = updated;
    w.changed("mqtriggers", "updated", updated);
    await waitFor(
      async () => {
        try {
          const res = await w.nc.request("orders2.x", Buffer.from("moved"), { timeout: 500 });
          return Buffer.from(res.data).toString() === "echo:moved";
        } catch {
          return false;
        }
      },
      { timeoutMs: 5000, what: "the new subject" },
    );
    try {
      await w.nc.request("orders.x", Buffer.from("old"), { timeout: 500 });
      expect.fail("the old subject still answered");
    } catch (err) {
      expect(String(err)).to.match(/no responders|503|timeout/i);
    }
  });
});
