import {
  Codecs,
  FizzError,
  LOG_STREAM,
  callMarker,
  type InstanceEventMessage,
  type LogLine,
  type SpecializeRequest,
} from "@fizz/events";
import { ensureLogStream } from "@fizz/kit";
import { waitFor } from "@fizz/testkit";
import { DiscardPolicy, jetstream, jetstreamManager } from "@nats-io/jetstream";
import { expect } from "chai";
import { pino } from "pino";
import { request } from "undici";
import type { PoolkeeperDeps } from "../src/index";
import { Harness, environment } from "./harness";

/** The platform's NATS password in this suite (harness LOCKED_PASSWORD): it must never show. */
const NATS_PASSWORD = "poolkeeper-test-password";
const LINES_PER_SECOND = 100;

/**
 * Function logs on the process backend, end to end: a real nats-server with the platform's
 * permissions (the poolkeeper connects as `poolkeeper`), a real poolkeeper and node runtimes; the
 * test plays the registry. The node runtime prints no call markers of its own in these tests'
 * calls (no X-Request-Id is sent), so the functions print markers themselves (callMarker).
 */
describe("function logs (process backend, real runtimes)", function () {
  this.timeout(120_000);
  const h = new Harness();
  /** Log lines and instance events in the order this connection received them. */
  const seen: Array<{ log?: LogLine; event?: InstanceEventMessage }> = [];
  /** The poolkeeper's own log, at trace level. */
  let pkLog = "";

  const specialize = (name: string, source: string, extra: Partial<SpecializeRequest> = {}) =>
    h.specializeNode(name, source, {
      function: { namespace: "default", name, revision: 7 },
      concurrency: 4,
      ...extra,
    });
  const call = async (address: string, instanceId: string) => {
    const res = await request(address, { headers: { "x-fizz-instance": instanceId } });
    return { status: res.statusCode, text: await res.body.text() };
  };
  /**
   * The runtime says "[fizz] specialized …" while it loads a function, so it is the function's
   * line too; the exact comparisons below leave it out (the loading test checks it is there).
   */
  const printed = (l: LogLine) => !l.line.startsWith("[fizz] specialized ");
  const published = (fn: string) =>
    h.logs.filter((l) => l.line.function === fn && printed(l.line)).map((l) => l.line);

  /** What FIZZ_LOGS keeps of one function, read back through an ordered consumer. */
  async function stored(fn: string): Promise<LogLine[]> {
    const subject = h.s.logs("default", fn);
    const jsm = await jetstreamManager(h.nc);
    const info = await jsm.streams.info(LOG_STREAM.name, { subjects_filter: subject });
    const count = info.state.subjects?.[subject] ?? 0;
    if (count === 0) return [];
    const consumer = await jetstream(h.nc).consumers.get(LOG_STREAM.name, {
      // One subject as a string: nats-server 2.9 knows no filter_subjects list.
      filter_subjects: subject,
    });
    const out: LogLine[] = [];
    for await (const m of await consumer.fetch({ max_messages: count, expires: 5_000 })) {
      out.push(Codecs.logs.decode(m.data).data);
      if (out.length === count) break;
    }
    return out.filter(printed);
  }
  const storedUntil = (fn: string, done: (lines: LogLine[]) => boolean, what: string) =>
    waitFor(
      async () => {
        const lines = await stored(fn);
        return done(lines) ? lines : undefined;
      },
      { timeoutMs: 30_000, what },
    );

  before(async () => {
    await h.setUp({ locked: true });
    h.environments.set("node", environment("node", "fizz/env-node", 2));
    h.answerRegistry();
    h.nc.subscribe(h.s.logsAll, {
      callback: (_e, m) => void seen.push({ log: Codecs.logs.decode(m.data).data }),
    });
    h.nc.subscribe(h.s.poolkeeperInstanceAll, {
      callback: (_e, m) => void seen.push({ event: Codecs.poolkeeperInstance.decode(m.data).data }),
    });
    const logger = pino({ level: "trace" }, { write: (s: string) => void (pkLog += s) });
    await h.startPoolkeeper(
      {
        FIZZ_LOG_LINES_PER_SECOND: String(LINES_PER_SECOND),
        FIZZ_LOG_BURST_SECONDS: "1",
        FIZZ_LOG_MAX_LINES_PER_FUNCTION: "5000",
        FIZZ_LOG_MAX_AGE: "2h",
      },
      // The harness passes a silent logger; this suite reads the poolkeeper's log.
      { logger } as Omit<PoolkeeperDeps, "logger">,
    );
    await h.pk.synced;
  });
  after(() => h.tearDown());

  it("creates FIZZ_LOGS at start with the configured limits, oldest lines discarded first", async () => {
    const jsm = await jetstreamManager(h.nc);
    const info = await waitFor(() => jsm.streams.info(LOG_STREAM.name).catch(() => undefined), {
      what: "the FIZZ_LOGS stream",
    });
    expect(info.config).to.include({
      max_msgs_per_subject: 5000,
      max_age: 2 * 3600 * 1e9,
      max_bytes: LOG_STREAM.maxBytes,
      discard: DiscardPolicy.Old,
    });
    expect(info.config.subjects).to.deep.equal([`${h.s.prefix}.logs.>`]);
    expect(info.config.max_msg_size).to.be.at.least(LOG_STREAM.maxLineBytes + 1024);
  });

  it("brings an existing FIZZ_LOGS to new limits (ensureLogStream, as the registry's tests call it)", async () => {
    await ensureLogStream(h.nc, h.s, { maxMsgsPerSubject: 4000, maxAgeMs: 7_200_000 });
    const jsm = await jetstreamManager(h.nc);
    expect((await jsm.streams.info(LOG_STREAM.name)).config.max_msgs_per_subject).to.equal(4000);
    await ensureLogStream(h.nc, h.s, { maxMsgsPerSubject: 5000, maxAgeMs: 7_200_000 });
    expect((await jsm.streams.info(LOG_STREAM.name)).config.max_msgs_per_subject).to.equal(5000);
  });

  it("publishes a function's stdout and stderr lines tagged with function, revision, instance, stream and request id, and FIZZ_LOGS keeps them", async () => {
    const m = (id: string) => JSON.stringify(callMarker(id) + "\n");
    const { instance } = await specialize(
      "speaker",
      `module.exports = async () => {
        process.stdout.write(${m("req-out-1")});
        console.log("hello from stdout");
        console.error("hello from stderr");
        process.stderr.write(${m("req-out-1")});
        console.error("stderr inside the call");
        process.stdout.write(${m("")});
        console.log("stdout after the call");
        return "spoke";
      };\n`,
    );
    expect(await call(instance.address, instance.id)).to.deep.equal({ status: 200, text: "spoke" });
    const lines = await storedUntil(
      "speaker",
      (l) => l.length >= 4,
      "the speaker's four lines in FIZZ_LOGS",
    );
    const shape = (l: LogLine) => [l.stream, l.line, l.requestId];
    const expected = [
      ["stdout", "hello from stdout", "req-out-1"],
      ["stderr", "hello from stderr", undefined],
      ["stderr", "stderr inside the call", "req-out-1"],
      ["stdout", "stdout after the call", undefined],
    ];
    // stdout and stderr are separate pipes: their relative order is not kept, each one's is.
    const byStream = (ls: unknown[][]) =>
      ["stdout", "stderr"].map((s) => ls.filter((l) => l[0] === s));
    expect(byStream(lines.map(shape))).to.deep.equal(byStream(expected));
    for (const l of lines)
      expect(l).to.include({
        namespace: "default",
        function: "speaker",
        revision: 7,
        instanceId: instance.id,
      });
    expect(lines.some((l) => l.line.includes("fizz:call"))).to.equal(false);
    await waitFor(() => published("speaker").length >= 4, {
      what: "lines on logs.default.speaker",
    });
    expect(byStream(published("speaker").map(shape))).to.deep.equal(byStream(expected));
  });

  it("shows *** instead of the function's secret value and the platform's NATS password", async () => {
    const value = "s3cret-api-key-0815";
    h.secrets.set("default/api-key", { token: Buffer.from(value).toString("base64") });
    const { instance } = await specialize(
      "leaky",
      `const fs = require("node:fs");
      module.exports = async () => {
        const key = fs.readFileSync(process.env.FIZZ_SECRETS_DIR + "/default/api-key/token", "utf8");
        console.log("the key is " + key + "!");
        console.error("base64: " + Buffer.from(key).toString("base64"));
        console.log("guessing the platform's: ${NATS_PASSWORD}");
        return "leaked?";
      };\n`,
      { secrets: ["api-key"] },
    );
    expect((await call(instance.address, instance.id)).text).to.equal("leaked?");
    const lines = await storedUntil("leaky", (l) => l.length >= 3, "the leaky function's lines");
    expect(lines.map((l) => l.line).sort()).to.deep.equal([
      "base64: ***",
      "guessing the platform's: ***",
      "the key is ***!",
    ]);
    await waitFor(() => published("leaky").length >= 3);
    const all = JSON.stringify([...lines, ...published("leaky")]);
    for (const secret of [value, Buffer.from(value).toString("base64"), NATS_PASSWORD])
      expect(all).to.not.include(secret);
    // The poolkeeper's own log has the lines at debug level, masked the same way.
    expect(pkLog).to.include("the key is ***!");
    for (const secret of [value, Buffer.from(value).toString("base64"), NATS_PASSWORD])
      expect(pkLog).to.not.include(secret);
  });

  it("masks the secret in the load error and the poolkeeper's log when a function's load error quotes it", async () => {
    const value = "loader-secret-4242";
    h.secrets.set("default/db", { password: Buffer.from(value).toString("base64") });
    const failed = await specialize(
      "quoting",
      `const fs = require("node:fs");
      throw new Error("cannot connect with " + fs.readFileSync(process.env.FIZZ_SECRETS_DIR + "/default/db/password", "utf8"));\n`,
      { secrets: ["db"] },
    ).catch((e: Error) => e);
    expect(failed).to.be.instanceOf(FizzError);
    expect((failed as FizzError).code).to.equal("FUNCTION_LOAD_FAILED");
    // The error goes on to the scheduler, the gateway's client and their logs: masked too.
    expect((failed as FizzError).message).to.include("cannot connect with ***");
    expect((failed as FizzError).message).to.not.include(value);
    expect(pkLog).to.include("cannot connect with ***");
    expect(pkLog).to.not.include(value);
  });

  it("publishes what a function prints while it loads, and a failing load's output, error and end", async () => {
    const { instance } = await specialize(
      "importer",
      `console.log("connecting to redis...");
      module.exports = async () => "ok";\n`,
    );
    const loaded = await storedUntil(
      "importer",
      (l) => l.length > 0,
      "the import-time print of a function that loaded",
    );
    expect(loaded.map((l) => [l.line, l.instanceId, l.revision])).to.deep.equal([
      ["connecting to redis...", instance.id, 7],
    ]);
    await waitFor(() =>
      h.logs.some(
        (l) =>
          l.line.function === "importer" &&
          /^\[fizz\] specialized default\/importer@7/.test(l.line.line),
      ),
    );

    const failed = await specialize(
      "broken-import",
      `console.log("connecting to redis...");
      console.error("redis: ECONNREFUSED");
      throw new Error("cannot start without redis");\n`,
    ).catch((e: Error) => e);
    expect((failed as FizzError).code).to.equal("FUNCTION_LOAD_FAILED");
    const lines = await storedUntil(
      "broken-import",
      (l) => l.some((x) => x.line.startsWith("fizz: instance stopped")),
      "the failed load's lines and its instance's end",
    );
    const texts = lines.map((l) => l.line);
    expect(texts).to.include.members([
      "connecting to redis...",
      "redis: ECONNREFUSED",
      "[fizz] default/broken-import@7 failed to load: broken-import.js:3: Error: cannot start without redis",
    ]);
    expect(lines.find((l) => l.line === "redis: ECONNREFUSED")).to.include({
      stream: "stderr",
      function: "broken-import",
      revision: 7,
    });
    expect(lines.at(-1)?.line).to.match(/^fizz: instance stopped \(function failed to load\)/);
  });

  it("keeps a crashing function's last lines, then says how it ended, before the died event", async () => {
    const { instance } = await specialize(
      "crasher",
      `module.exports = async () => {
        console.log("about to crash");
        console.error("fatal: the last words");
        process.exit(3);
      };\n`,
    );
    await request(instance.address, { headers: { "x-fizz-instance": instance.id } }).then(
      (r) => r.body.text(),
      () => undefined,
    );
    const lines = await storedUntil(
      "crasher",
      (l) => l.some((x) => x.stream === "system"),
      "the crasher's exit line",
    );
    expect(lines.map((l) => l.line).sort()).to.deep.equal(
      ["about to crash", "fatal: the last words", "fizz: instance exited with code 3"].sort(),
    );
    expect(lines.at(-1)).to.include({
      stream: "system",
      line: "fizz: instance exited with code 3",
      instanceId: instance.id,
    });
    const died = await waitFor(() =>
      seen.findIndex((s) => s.event?.event === "died" && s.event.instance.id === instance.id),
    ).then((i) => (i >= 0 ? i : Promise.reject(new Error("no died event"))));
    const lastLine = seen.findIndex(
      (s) => s.log?.instanceId === instance.id && s.log.stream === "system",
    );
    expect(lastLine, "the exit line comes before the died event").to.be.within(0, died - 1);
  });

  it("holds a flooding function to its budget, announces and counts the drops, while another function answers and its lines arrive", async () => {
    const started = Date.now();
    const flooder = await specialize(
      "flooder",
      `module.exports = async () => {
        const chunk = ("x".repeat(99) + "\\n").repeat(650);
        let left = 300;
        const more = () => {
          process.stdout.write(chunk);
          if (--left > 0) setImmediate(more);
        };
        more();
        return "flooding";
      };\n`,
    );
    const quiet = await specialize(
      "quiet",
      `let n = 0;\nmodule.exports = async () => { console.log("quiet call " + ++n); return "calm"; };\n`,
    );
    expect((await call(flooder.instance.address, flooder.instance.id)).text).to.equal("flooding");
    for (let n = 0; n < 5; n++)
      expect(await call(quiet.instance.address, quiet.instance.id)).to.deep.equal({
        status: 200,
        text: "calm",
      });
    await waitFor(() => published("quiet").length >= 5, { what: "the quiet function's lines" });
    expect(published("quiet").map((l) => l.line)).to.deep.equal(
      [1, 2, 3, 4, 5].map((n) => `quiet call ${n}`),
    );
    const announcement = await waitFor(
      () =>
        published("flooder").find(
          (l) => l.stream === "system" && l.line.startsWith("fizz: dropped"),
        ),
      { timeoutMs: 60_000, what: "the drop announcement" },
    );
    expect(announcement.line).to.match(
      new RegExp(`^fizz: dropped \\d+ lines \\(over ${LINES_PER_SECOND} lines/s\\)$`),
    );
    const metrics = await (await request(`http://127.0.0.1:${h.pk.port}/metrics`)).body.text();
    const dropped = Number(
      /^fizz_function_log_lines_dropped_total\{[^}]*function="flooder"[^}]*\} (\d+)/m.exec(
        metrics,
      )?.[1],
    );
    expect(dropped).to.be.greaterThan(0);
    expect(metrics).to.not.match(/fizz_function_log_lines_dropped_total\{[^}]*function="quiet"/);
    // The budget: at most one burst plus the rate for the time that passed, whatever the speed.
    const seconds = (Date.now() - started) / 1000;
    const passed = published("flooder").filter((l) => l.stream === "stdout").length;
    expect(passed).to.be.at.most(Math.ceil(LINES_PER_SECOND * (seconds + 1)));
    expect(passed + dropped).to.be.at.most(300 * 650);
  });
});
