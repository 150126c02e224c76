import { expect } from "chai";
import { Codecs, ERROR_TYPE, FizzError, encodeError, envVarName, type Codec } from "@fizz/events";

const enc = new TextEncoder();
const bytes = (v: unknown) => enc.encode(typeof v === "string" ? v : JSON.stringify(v));

function decodeError(codec: Codec<unknown, unknown>, raw: Uint8Array): FizzError {
  try {
    codec.decode(raw);
  } catch (e) {
    if (e instanceof FizzError) return e;
    throw e;
  }
  throw new Error("decode did not fail");
}

const lease = {
  instanceId: "i-1",
  address: "http://127.0.0.1:4000",
  function: { namespace: "default", name: "hello", revision: 2 },
  slots: 10,
  concurrency: 10,
  timeoutMs: 60000,
};

describe("codecs", () => {
  it("round-trips a lease request and applies defaults", () => {
    const c = Codecs.schedulerLease.request;
    const env = c.decode(
      c.encode({ namespace: "default", function: "hello", gateway: "gw-1" }, "gw-1"),
    );
    expect(env.v).to.equal(1);
    expect(env.type).to.equal("scheduler.lease.request.v1");
    expect(env.sender).to.equal("gw-1");
    expect(env.data).to.deep.equal({
      namespace: "default",
      function: "hello",
      gateway: "gw-1",
      exclude: [],
      failed: [],
    });
  });

  it("round-trips a lease reply", () => {
    const c = Codecs.schedulerLease.reply;
    expect(c.decode(c.encode({ lease }, "s")).data.lease).to.deep.equal(lease);
  });

  it("rejects bytes that are not JSON with MALFORMED_MESSAGE", () => {
    const err = decodeError(Codecs.schedulerLease.request, bytes("{nope"));
    expect(err.code).to.equal("MALFORMED_MESSAGE");
  });

  it("rejects an envelope of another version", () => {
    const err = decodeError(
      Codecs.schedulerReport,
      bytes({ v: 2, type: "scheduler.report.v1", sender: "x", ts: 1, data: {} }),
    );
    expect(err.code).to.equal("MALFORMED_MESSAGE");
    expect(err.field).to.equal("v");
  });

  it("rejects a message of another type on the subject", () => {
    const c = Codecs.schedulerReport;
    const other = Codecs.schedulerInstances.encode(
      { namespace: "default", function: "f", revision: 1, removed: [] },
      "s",
    );
    const err = decodeError(c, other);
    expect(err.message).to.match(
      /expected a scheduler.report.v1 message, got scheduler.instances.v1/,
    );
  });

  it("names the invalid field of the data", () => {
    const raw = bytes({
      v: 1,
      type: "scheduler.lease.reply.v1",
      sender: "s",
      ts: 1,
      data: { lease: { ...lease, slots: 0 } },
    });
    const err = decodeError(Codecs.schedulerLease.reply, raw);
    expect(err.code).to.equal("MALFORMED_MESSAGE");
    expect(err.field).to.equal("data.lease.slots");
  });

  it("rejects envelopes missing sender, ts or data", () => {
    for (const [k, v] of [
      ["sender", { v: 1, type: "logs.v1", ts: 1, data: {} }],
      ["ts", { v: 1, type: "logs.v1", sender: "s", data: {} }],
      ["data", { v: 1, type: "logs.v1", sender: "s", ts: 1 }],
    ] as const) {
      expect(decodeError(Codecs.logs, bytes(v)).field, k).to.equal(k);
    }
    expect(decodeError(Codecs.logs, bytes([1, 2])).code).to.equal("MALFORMED_MESSAGE");
  });

  it("rebuilds a remote error as the typed error it was", () => {
    const sent = new FizzError("FUNCTION_LOAD_FAILED", "hello.py:2: SyntaxError", {
      field: "code",
    });
    const raw = encodeError(sent, "poolkeeper-1");
    const envelope = JSON.parse(new TextDecoder().decode(raw)) as { type?: unknown };
    expect(envelope.type).to.equal(ERROR_TYPE);
    const got = decodeError(Codecs.poolkeeperSpecialize.reply, raw);
    expect(got.code).to.equal("FUNCTION_LOAD_FAILED");
    expect(got.message).to.equal("hello.py:2: SyntaxError");
    expect(got.field).to.equal("code");
    expect(got.retryable).to.equal(false);
    expect(got.status).to.equal(500);
  });

  it("validates registry change events down to the object", () => {
    const c = Codecs.registryChanged;
    const raw = bytes({
      v: 1,
      type: "registry.changed.v1",
      sender: "r",
      ts: 1,
      data: {
        kind: "functions",
        op: "created",
        namespace: "default",
        name: "f",
        revision: 1,
        object: { kind: "Function" },
      },
    });
    expect(decodeError(c, raw).field).to.match(/^data\.object/);
  });

  it("round-trips a registry listing that names the objects it left out, and reads one without", () => {
    const c = Codecs.registryList.reply;
    const skipped = [{ namespace: "default", name: "broken" }];
    expect(c.decode(c.encode({ items: [], skipped }, "r")).data).to.deep.equal({
      items: [],
      skipped,
    });
    // An older registry's reply: no `skipped` at all.
    const old = bytes({ v: 1, type: c.type, sender: "r", ts: 1, data: { items: [] } });
    expect(c.decode(old).data).to.deep.equal({ items: [] });
    const bad = bytes({
      v: 1,
      type: c.type,
      sender: "r",
      ts: 1,
      data: { items: [], skipped: [{ namespace: "default" }] },
    });
    expect(decodeError(c, bad).field).to.equal("data.skipped.0.name");
  });

  it("has a codec for every subject the services use", () => {
    expect(Object.keys(Codecs).sort()).to.deep.equal(
      [
        "buildRequested",
        "dead",
        "gatewayPresence",
        "gatewayStats",
        "registryBuildReport",
        "registryConfigRead",
        "invoke",
        "gatewaySync",
        "logs",
        "poolkeeperInstance",
        "poolkeeperList",
        "poolkeeperRetire",
        "poolkeeperSpecialize",
        "registryChanged",
        "registryGet",
        "registryList",
        "schedulerInstances",
        "schedulerLease",
        "schedulerReport",
      ].sort(),
    );
  });
});

describe("update barrier codecs", () => {
  it("round-trips a gateway sync request and reply", () => {
    const req = {
      kind: "functions" as const,
      op: "updated" as const,
      namespace: "default",
      name: "f",
      revision: 3,
    };
    expect(
      Codecs.gatewaySync.request.decode(Codecs.gatewaySync.request.encode(req, "registry-1")).data,
    ).to.deep.equal(req);
    const reply = Codecs.gatewaySync.reply.decode(
      Codecs.gatewaySync.reply.encode({ gateway: "gw-1", applied: true }, "gw-1"),
    );
    expect(reply.data).to.deep.equal({ gateway: "gw-1", applied: true });
  });

  it("carries the revision a gateway knows in a lease request", () => {
    const c = Codecs.schedulerLease.request;
    const env = c.decode(
      c.encode({ namespace: "default", function: "f", gateway: "gw", minRevision: 4 }, "gw"),
    );
    expect(env.data.minRevision).to.equal(4);
    const bad = new TextEncoder().encode(
      JSON.stringify({
        v: 1,
        type: c.type,
        sender: "gw",
        ts: 1,
        data: { namespace: "default", function: "f", gateway: "gw", minRevision: 0 },
      }),
    );
    expect(() => c.decode(bad))
      .to.throw(FizzError)
      .with.property("field", "data.minRevision");
  });

  it("refuses a presence beat without an interval", () => {
    const raw = new TextEncoder().encode(
      JSON.stringify({
        v: 1,
        type: "gateway.presence.v1",
        sender: "g",
        ts: 1,
        data: { gateway: "g" },
      }),
    );
    expect(() => Codecs.gatewayPresence.decode(raw))
      .to.throw(FizzError)
      .with.property("field", "data.intervalMs");
  });
});

describe("package and build codecs", () => {
  const digest = `sha256:${"a".repeat(64)}`;
  const archive = { digest, size: 10 };
  const fn = { namespace: "default", name: "shop", revision: 2 };
  const env = { namespace: "default", name: "nodejs" };

  it("round-trips a build request and a build report", () => {
    const req = {
      package: { namespace: "default", name: "shop", revision: 3 },
      environment: env,
      source: archive,
      buildCommand: "./build.sh",
    };
    expect(Codecs.buildRequested.decode(Codecs.buildRequested.encode(req, "t")).data).to.deep.equal(
      req,
    );
    const rep = { package: req.package, sourceDigest: digest, state: "failed", log: "x" } as const;
    const c = Codecs.registryBuildReport.request;
    expect(c.decode(c.encode(rep, "t")).data).to.deep.include(rep);
  });

  it("refuses a build report in an unknown state, naming the field", () => {
    const c = Codecs.registryBuildReport.request;
    const raw = c.encode(
      {
        package: { namespace: "default", name: "shop", revision: 1 },
        sourceDigest: digest,
        state: "done" as "failed",
      },
      "t",
    );
    const err = decodeError(c, raw);
    expect(err.code).to.equal("MALFORMED_MESSAGE");
    expect(err.field).to.equal("data.state");
  });

  it("takes a specialize request with exactly one of code and archive", () => {
    const c = Codecs.poolkeeperSpecialize.request;
    const base = { environment: env, function: fn, concurrency: 5 };
    const withArchive = { ...base, archive, env: { GREETING: "hi" }, secrets: ["db"] };
    expect(c.decode(c.encode(withArchive, "t")).data).to.deep.include(withArchive);
    const both = c.encode({ ...base, archive, code: { filename: "a.js", ...archive } }, "t");
    expect(decodeError(c, both).field).to.equal("data.code");
    const neither = c.encode(base, "t");
    expect(decodeError(c, neither).code).to.equal("MALFORMED_MESSAGE");
  });

  it("refuses function env names the platform or the dynamic loader reads", () => {
    for (const bad of [
      "FIZZ_X",
      "PATH",
      "LD_PRELOAD",
      "LD_AUDIT",
      "GCONV_PATH",
      "GLIBC_TUNABLES",
      "1X",
    ])
      expect(envVarName.safeParse(bad).success, bad).to.equal(false);
    for (const good of ["GREETING", "PIP_FIND_LINKS", "REDIS_URL", "_X"])
      expect(envVarName.safeParse(good).success, good).to.equal(true);
  });
});
