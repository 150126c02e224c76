import { callMarker, FizzError, type FunctionRef, type LogLine } from "@fizz/events";
import { createLogger, silentLogger } from "@fizz/kit";
import { FakeClock } from "@fizz/testkit";
import { expect } from "chai";
import { Registry } from "prom-client";
import type { BackendInstance } from "../src/backend";
import { loadConfig } from "../src/config";
import type { Tracked } from "../src/instances";
import { CUT_MARK, LineSplitter } from "../src/lines";
import { LogCapture } from "../src/logs/capture";
import { createLogMetrics } from "../src/logs/log-metrics";
import { Masker, platformSecrets, SecretBook, secretForms } from "../src/logs/mask";

const FN: FunctionRef = { namespace: "team-a", name: "hello", revision: 3 };
const b64 = (s: string) => Buffer.from(s).toString("base64");

function instance(id = "node-1"): BackendInstance {
  return {
    id,
    address: "http://127.0.0.1:1",
    environment: { namespace: "default", name: "node" },
    startedAt: 0,
    specializeToken: "tok-3f9a8c7e1d2b4a5f6e7d8c9b0a1f2e3d",
  };
}

/** A capture with the pool faked at its interface (tracked) and publishes collected. */
function setUp(
  opts: {
    linesPerSecond?: number;
    bytesPerSecond?: number;
    totalLinesPerSecond?: number;
    echo?: { lines: string[] };
  } = {},
) {
  const clock = new FakeClock();
  const registry = new Registry();
  const published: LogLine[] = [];
  const pool = new Map<string, Tracked>();
  const book = new SecretBook();
  const limits = {
    linesPerSecond: opts.linesPerSecond ?? 1000,
    bytesPerSecond: opts.bytesPerSecond ?? 1024 * 1024,
    burstSeconds: 1,
  };
  const capture = new LogCapture({
    publish: (_fn, line) => published.push(line),
    tracked: (id) => pool.get(id),
    limits,
    ...(opts.totalLinesPerSecond
      ? {
          totalLimits: {
            linesPerSecond: opts.totalLinesPerSecond,
            bytesPerSecond: 1024 * 1024,
            burstSeconds: 1,
          },
        }
      : {}),
    maxLineBytes: 16 * 1024,
    book,
    platformSecrets: platformSecrets("nats://poolkeeper:nats-p%40ss-9931@127.0.0.1:4222"),
    metrics: createLogMetrics(registry),
    logger: opts.echo
      ? createLogger("poolkeeper", "info", { write: (l: string) => void opts.echo?.lines.push(l) })
      : silentLogger(),
    ...(opts.echo ? { echo: true } : {}),
    clock,
  });
  const track = (i: BackendInstance, state: Tracked["state"]): Tracked => {
    const t: Tracked = {
      instance: i,
      envKey: "default/node",
      generation: 1,
      state,
      killing: false,
    };
    if (state === "specialized") t.function = FN;
    pool.set(i.id, t);
    return t;
  };
  const specialize = (i: BackendInstance) => track(i, "specialized");
  const dropped = async () =>
    (await registry.getMetricsAsJSON())
      .find((m) => m.name === "fizz_function_log_lines_dropped_total")
      ?.values.find((v) => v.labels.namespace === "team-a" && v.labels.function === "hello")
      ?.value ?? 0;
  return { clock, capture, published, pool, book, track, specialize, dropped, limits };
}

describe("function log capture", () => {
  it("tags lines with namespace, function, revision, instance and stream; a call marker sets the request id of its own stream only", () => {
    const { capture, published, specialize } = setUp();
    const i = instance();
    specialize(i);
    capture.line(i, "stdout", callMarker("req-1"));
    capture.line(i, "stdout", "inside the call");
    capture.line(i, "stderr", "an error line, no marker on stderr");
    capture.line(i, "stderr", callMarker("req-1"));
    capture.line(i, "stderr", "now tagged");
    capture.line(i, "stdout", callMarker(""));
    capture.line(i, "stdout", "after the call");
    capture.line(i, "stderr", "stderr still in the call");
    expect(published.map((l) => [l.stream, l.line, l.requestId])).to.deep.equal([
      ["stdout", "inside the call", "req-1"],
      ["stderr", "an error line, no marker on stderr", undefined],
      ["stderr", "now tagged", "req-1"],
      ["stdout", "after the call", undefined],
      ["stderr", "stderr still in the call", "req-1"],
    ]);
    expect(published[0]).to.include({
      namespace: "team-a",
      function: "hello",
      revision: 3,
      instanceId: "node-1",
    });
    expect(published.some((l) => l.line.includes("fizz:call"))).to.equal(false);
  });

  it("reads a marker glued to an unterminated line: the text keeps the old tag, the marker applies after", () => {
    const { capture, published, specialize } = setUp();
    const i = instance();
    specialize(i);
    capture.line(i, "stdout", callMarker("req-1"));
    capture.line(i, "stdout", `partial from req-1${callMarker("req-2")}`);
    capture.line(i, "stdout", "from req-2");
    capture.line(i, "stdout", `no marker here ${callMarker("has space")}`);
    expect(published.map((l) => [l.line, l.requestId])).to.deep.equal([
      ["partial from req-1", "req-1"],
      ["from req-2", "req-2"],
      [`no marker here ${callMarker("has space")}`, "req-2"],
    ]);
  });

  it("echoes a function's published lines at info with FIZZ_LOG_ECHO (npm start's terminal), masked, and never a warm instance's", () => {
    const echo = { lines: [] as string[] };
    const { capture, book, specialize, track } = setUp({ echo });
    book.record("team-a", { secrets: { db: { password: b64("hunter2-secret") } } });
    const warm = instance("warm-1");
    track(warm, "warm");
    capture.line(warm, "stdout", "generic runtime line");
    const i = instance();
    specialize(i);
    capture.line(i, "stdout", "connecting with hunter2-secret");
    const recs = echo.lines.map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(recs.map((r) => [r.level, r.function, r.stream, r.msg])).to.deep.equal([
      [30, "team-a/hello", "stdout", "connecting with ***"],
    ]);
  });

  it("publishes nothing of a warm instance, and a loading one's lines as its function's once assigned", () => {
    const { capture, published, track, specialize } = setUp();
    const i = instance();
    capture.line(i, "stdout", "not tracked yet");
    const t = track(i, "warm");
    capture.line(i, "stdout", "the runtime warming up");
    t.state = "specializing";
    capture.line(i, "stdout", "taken, not yet assigned");
    capture.assign(i.id, FN);
    capture.line(i, "stdout", "connecting to redis...");
    specialize(i);
    capture.line(i, "stdout", "the function speaks");
    expect(published.map((l) => l.line)).to.deep.equal([
      "connecting to redis...",
      "the function speaks",
    ]);
    expect(published[0]).to.include({ function: "hello", revision: 3, instanceId: "node-1" });
  });

  it("masks a loading instance's output and ends its stream with how it was stopped", () => {
    const { capture, published, track, book } = setUp();
    book.record("team-a", { secrets: { db: { password: b64("hunter2-very-secret") } } });
    const i = instance();
    track(i, "specializing");
    capture.assign(i.id, FN);
    capture.line(i, "stderr", "Error: cannot log in with hunter2-very-secret");
    capture.exited(i, {
      code: null,
      signal: "SIGTERM",
      expected: true,
      reason: "function failed to load",
    });
    expect(published.map((l) => [l.stream, l.line])).to.deep.equal([
      ["stderr", "Error: cannot log in with ***"],
      ["system", "fizz: instance stopped (function failed to load); killed by SIGTERM"],
    ]);
  });

  it("masks the namespace's secret values (decoded and base64), the specialize token and the NATS password", () => {
    const { capture, published, specialize, book } = setUp();
    const i = instance();
    book.record("team-a", { secrets: { db: { password: b64("hunter2-db-pass\n") } } });
    book.record("team-b", { secrets: { other: { key: b64("team-b-value") } } });
    specialize(i);
    capture.line(i, "stdout", "password=hunter2-db-pass end");
    capture.line(i, "stdout", `raw ${b64("hunter2-db-pass\n")}`);
    capture.line(i, "stdout", `token ${i.specializeToken!}`);
    capture.line(i, "stdout", "nats nats-p@ss-9931 and nats-p%40ss-9931");
    capture.line(i, "stdout", "not ours: team-b-value");
    expect(published.map((l) => l.line)).to.deep.equal([
      "password=*** end",
      "raw ***",
      "token ***",
      "nats *** and ***",
      "not ours: team-b-value",
    ]);
  });

  it("keeps masking a secret's old value after a rotation (instances specialized before still hold it)", () => {
    const { capture, published, specialize, book } = setUp();
    const i = instance();
    specialize(i);
    book.record("team-a", { secrets: { api: { key: b64("old-value-1234") } } });
    capture.line(i, "stdout", "old-value-1234");
    book.record("team-a", { secrets: { api: { key: b64("new-value-5678") } } });
    capture.line(i, "stdout", "old-value-1234 new-value-5678");
    expect(published.map((l) => l.line)).to.deep.equal(["***", "*** ***"]);
  });

  it("does not mask values shorter than 4 characters, which would wreck the logs and act as an oracle", () => {
    const m = new Masker(["abc", "abcd"]);
    expect(m.mask("abc abcd")).to.equal("abc ***");
    expect(secretForms(b64("no"))).to.deep.equal([]);
  });

  it("masks the start of a secret left at the end of a line cut at the length limit", () => {
    const m = new Masker(["s3cr3t-value-xyz"]);
    expect(m.maskWithTail("lots of text s3cr3t-val")).to.equal("lots of text ***");
    const { capture, published, specialize, book } = setUp();
    const i = instance();
    book.record("team-a", { secrets: { s: { k: b64("s3cr3t-value-xyz") } } });
    specialize(i);
    capture.line(
      i,
      "stdout",
      "x".repeat(16 * 1024 - CUT_MARK.length - 6) + "s3cr3t-value-xyz" + "y".repeat(100),
    );
    expect(published[0]!.line.endsWith(`***${CUT_MARK}`)).to.equal(true);
    expect(published[0]!.line).to.not.include("s3cr3t");
  });

  it("masks a multi-line secret line by line and a JSON-escaped one", () => {
    const forms = secretForms(b64('line-one-abc\nline-two-def "q"'));
    const m = new Masker(forms);
    expect(
      m.mask('line-two-def "q" | line-one-abc | {"v":"line-one-abc\\nline-two-def \\"q\\""}'),
    ).to.equal('*** | *** | {"v":"***"}');
  });

  it("drops lines past the budget, counts them per function and says how many once a second", async () => {
    const { capture, published, specialize, clock, dropped } = setUp({ linesPerSecond: 10 });
    const i = instance();
    specialize(i);
    for (let n = 0; n < 25; n++) capture.line(i, "stdout", `line ${n}`);
    expect(published.map((l) => l.line)).to.have.length(10);
    expect(await dropped()).to.equal(15);
    await clock.advance(999);
    expect(published.filter((l) => l.stream === "system")).to.have.length(0);
    await clock.advance(1);
    expect(published.filter((l) => l.stream === "system").map((l) => l.line)).to.deep.equal([
      "fizz: dropped 15 lines (over 10 lines/s)",
    ]);
    // A second's worth of tokens again.
    for (let n = 0; n < 12; n++) capture.line(i, "stdout", `again ${n}`);
    expect(published.filter((l) => l.line.startsWith("again"))).to.have.length(10);
    await clock.advance(1000);
    expect(published.filter((l) => l.stream === "system").at(-1)!.line).to.equal(
      "fizz: dropped 2 lines (over 10 lines/s)",
    );
    expect(await dropped()).to.equal(17);
  });

  it("holds all instances together to the poolkeeper-wide budget and says so in the stream of each that lost lines", async () => {
    const { capture, published, specialize, clock, dropped } = setUp({ totalLinesPerSecond: 5 });
    const [a, b] = [instance("node-a"), instance("node-b")];
    specialize(a);
    specialize(b);
    for (let n = 0; n < 3; n++) capture.line(a, "stdout", `a ${n}`);
    // b splits its bytes itself (the process backend): the shared budget applies before decoding.
    const s = new LineSplitter((l) => capture.line(b, "stdout", l), {
      gate: capture.gate(b, "stdout"),
    });
    s.push(Buffer.from("b 0\nb 1\nb 2\nb 3\n"));
    expect(published.map((l) => l.line)).to.deep.equal(["a 0", "a 1", "a 2", "b 0", "b 1"]);
    expect(await dropped()).to.equal(2);
    await clock.advance(1000);
    expect(
      published.filter((l) => l.stream === "system").map((l) => [l.instanceId, l.line]),
    ).to.deep.equal([
      [
        "node-b",
        "fizz: dropped 2 lines (the poolkeeper's 5 lines/s, 1 MiB/s for all instances is spent)",
      ],
    ]);
    // A second later the shared budget has refilled for everyone.
    capture.line(a, "stdout", "a again");
    s.push(Buffer.from("b again\n"));
    expect(published.slice(-2).map((l) => l.line)).to.deep.equal(["a again", "b again"]);
  });

  it("names the byte limit when lines are dropped for their size", async () => {
    const { capture, published, specialize, clock } = setUp({ bytesPerSecond: 1000 });
    const i = instance();
    specialize(i);
    // The byte bucket holds at least one longest line (16 KiB), so these fill it.
    for (let n = 0; n < 20; n++) capture.line(i, "stdout", "y".repeat(1000));
    await clock.advance(1000);
    const system = published.filter((l) => l.stream === "system").map((l) => l.line);
    expect(system).to.have.length(1);
    expect(system[0]).to.match(/^fizz: dropped \d+ lines \(over 1000 bytes\/s\)$/);
  });

  it("ends a specialized instance's stream with its pending drops and how it ended", () => {
    const { capture, published, specialize } = setUp({ linesPerSecond: 1 });
    const i = instance();
    specialize(i);
    capture.line(i, "stdout", "last words");
    capture.line(i, "stdout", "dropped");
    capture.exited(i, { code: 3, signal: null, expected: false, reason: "exited with code 3" });
    expect(published.map((l) => [l.stream, l.line])).to.deep.equal([
      ["stdout", "last words"],
      ["system", "fizz: dropped 1 line (over 1 lines/s)"],
      ["system", "fizz: instance exited with code 3"],
    ]);
    capture.exited(instance("warm-1"), { code: 0, signal: null, expected: true, reason: "x" });
    expect(published).to.have.length(3);
  });

  it("says why an instance was stopped and by which signal", () => {
    const { capture, published, specialize } = setUp();
    const i = instance();
    specialize(i);
    capture.exited(i, { code: null, signal: "SIGTERM", expected: true, reason: "retired: idle" });
    expect(published.map((l) => l.line)).to.deep.equal([
      "fizz: instance stopped (retired: idle); killed by SIGTERM",
    ]);
  });
});

describe("LineSplitter with a budget gate", () => {
  it("drops lines over the budget before decoding them and a lost call marker leaves the stream untagged", () => {
    const { capture, published, specialize } = setUp({ linesPerSecond: 2 });
    const i = instance();
    specialize(i);
    const gate = capture.gate(i, "stdout");
    const s = new LineSplitter((l) => capture.line(i, "stdout", l), { gate });
    s.push(Buffer.from(`${callMarker("req-9")}\nfirst\n`));
    s.push(Buffer.from(`second\n${callMarker("req-10")}\nthird\n`));
    expect(published.map((l) => [l.line, l.requestId])).to.deep.equal([["first", "req-9"]]);
    gate.release();
  });

  it("counts every dropped line while exhausted, including a partial last one, and skips its rest", async () => {
    const { capture, published, specialize, dropped } = setUp({ linesPerSecond: 1 });
    const i = instance();
    specialize(i);
    const s = new LineSplitter((l) => capture.line(i, "stdout", l), {
      gate: capture.gate(i, "stdout"),
    });
    s.push(Buffer.from("kept\nd1\nd2\nd3\npart"));
    s.push(Buffer.from("ial\n"));
    expect(published.map((l) => l.line)).to.deep.equal(["kept"]);
    expect(await dropped()).to.equal(4);
  });

  it("splits bytes at newlines without breaking multi-byte characters, and cuts at a character boundary", () => {
    const lines: string[] = [];
    const s = new LineSplitter((l) => lines.push(l), { maxLineBytes: 40 });
    const text = "héllo wörld ✓\n";
    const bytes = Buffer.from(text);
    for (let n = 0; n < bytes.length; n++) s.push(bytes.subarray(n, n + 1));
    s.push(Buffer.from("✓".repeat(20) + "\n"));
    expect(lines[0]).to.equal("héllo wörld ✓");
    expect(lines[1]).to.equal("✓".repeat(7) + CUT_MARK);
    expect(Buffer.byteLength(lines[1]!)).to.be.at.most(40);
  });
});

describe("log settings", () => {
  const load = (env: Record<string, string>) =>
    loadConfig({ ...env }, "/tmp", { isRoot: false, exists: () => false });

  it("takes the budget and stream limits from FIZZ_LOG_*, with defaults", () => {
    expect(load({}).logs).to.deep.equal({
      linesPerSecond: 1000,
      bytesPerSecond: 1024 * 1024,
      burstSeconds: 2,
      totalLinesPerSecond: 20_000,
      totalBytesPerSecond: 16 * 1024 * 1024,
      maxAgeMs: 72 * 3600_000,
      maxBytes: 1024 ** 3,
      maxLinesPerFunction: 20_000,
      echo: false,
    });
    expect(
      load({
        FIZZ_LOG_MAX_AGE: "1h30m",
        FIZZ_LOG_LINES_PER_SECOND: "50",
        FIZZ_LOG_TOTAL_LINES_PER_SECOND: "500",
        FIZZ_LOG_ECHO: "true",
      }).logs,
    ).to.include({
      maxAgeMs: 90 * 60_000,
      linesPerSecond: 50,
      totalLinesPerSecond: 500,
      echo: true,
    });
  });

  it("refuses a bad FIZZ_LOG_MAX_AGE or rate, naming the variable", () => {
    for (const [name, value] of [
      ["FIZZ_LOG_MAX_AGE", "three days"],
      ["FIZZ_LOG_LINES_PER_SECOND", "0"],
      ["FIZZ_LOG_BYTES_PER_SECOND", "-5"],
      ["FIZZ_LOG_TOTAL_LINES_PER_SECOND", "0"],
    ] as const) {
      try {
        load({ [name]: value });
        expect.fail(`${name}=${value} accepted`);
      } catch (err) {
        expect(err).to.be.instanceOf(FizzError);
        expect((err as FizzError).code).to.equal("VALIDATION_FAILED");
        expect((err as FizzError).field).to.equal(name);
      }
    }
  });
});
