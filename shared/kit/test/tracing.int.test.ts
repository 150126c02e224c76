import { expect } from "chai";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { Codecs } from "@fizz/events";
import {
  createLogger,
  currentScope,
  parseTraceparent,
  request,
  serve,
  setRequestScopes,
  type CallScope,
  type Subscription,
} from "@fizz/kit";
import { startNats, type TestServer } from "@fizz/testkit";

const VALID = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

describe("trace context over kit's request/serve", () => {
  let nats: TestServer;
  let nc: NatsConnection;
  const subs: Subscription[] = [];
  const lines: Record<string, unknown>[] = [];
  const logger = createLogger("test", "info", {
    write: (s: string) => {
      lines.push(JSON.parse(s) as Record<string, unknown>);
    },
  });
  const seen: { outer: CallScope | undefined; inner: CallScope | undefined }[] = [];

  before(async () => {
    nats = await startNats();
    nc = await connect({ servers: nats.url });
    // inner: a second hop, asked from inside the outer handler without passing anything on.
    subs.push(
      serve(
        nc,
        "t.inner",
        Codecs.poolkeeperRetire,
        () => {
          seen[seen.length - 1]!.inner = currentScope();
          return Promise.resolve({ retired: true });
        },
        { sender: "inner", logger },
      ),
      serve(
        nc,
        "t.outer",
        Codecs.poolkeeperRetire,
        async (req) => {
          seen.push({ outer: currentScope(), inner: undefined });
          logger.info({ instance: req.instanceId }, "handling");
          await request(nc, "t.inner", Codecs.poolkeeperRetire, req, {
            sender: "outer",
            timeoutMs: 5000,
          });
          return { retired: true };
        },
        { sender: "outer", logger },
      ),
    );
    await nc.flush();
  });
  after(async () => {
    for (const s of subs) s.unsubscribe();
    await nc?.close();
    await nats?.cleanup();
  });

  it("gives the server the caller's trace, and the server's own requests carry it on", async () => {
    const trace = parseTraceparent(VALID)!;
    await request(
      nc,
      "t.outer",
      Codecs.poolkeeperRetire,
      { instanceId: "i1", reason: "x" },
      {
        sender: "test",
        timeoutMs: 5000,
        trace,
        requestId: "req-42",
      },
    );
    const last = seen[seen.length - 1]!;
    expect(last.outer?.trace?.traceId).to.equal(trace.traceId);
    expect(last.outer?.requestId).to.equal("req-42");
    expect(last.inner?.trace?.traceId).to.equal(trace.traceId);
    expect(last.inner?.requestId).to.equal("req-42");
    const line = lines.find((l) => l.msg === "handling" && l.instance === "i1");
    expect(line).to.include({ traceId: trace.traceId, requestId: "req-42" });
  });

  it("enters no scope for a request without a trace, and its log lines carry none", async () => {
    await request(
      nc,
      "t.outer",
      Codecs.poolkeeperRetire,
      { instanceId: "i2", reason: "x" },
      {
        sender: "test",
        timeoutMs: 5000,
      },
    );
    const last = seen[seen.length - 1]!;
    expect(last.outer).to.equal(undefined);
    expect(last.inner).to.equal(undefined);
    const line = lines.find((l) => l.msg === "handling" && l.instance === "i2");
    expect(line).to.not.have.property("traceId");
  });

  it("with request scopes off (the gateway), answers a traced request without entering a scope", async () => {
    const trace = parseTraceparent(VALID)!;
    setRequestScopes(false);
    try {
      const res = await request(
        nc,
        "t.outer",
        Codecs.poolkeeperRetire,
        { instanceId: "i3", reason: "x" },
        { sender: "test", timeoutMs: 5000, trace, requestId: "req-43" },
      );
      expect(res.retired).to.equal(true);
    } finally {
      setRequestScopes(true);
    }
    const last = seen[seen.length - 1]!;
    expect(last.outer).to.equal(undefined);
    expect(last.inner).to.equal(undefined);
  });
});
