import { FizzError, type FunctionRef, type LogLine } from "@fizz/events";
import { silentLogger } from "@fizz/kit";
import { FakeClock } from "@fizz/testkit";
import { expect } from "chai";
import { Registry } from "prom-client";
import { recordAdoptedSecrets } from "../src/adopted-secrets";
import type { AdoptedInstance, BackendInstance } from "../src/backend";
import type { FunctionConfig } from "../src/function-config";
import type { Tracked } from "../src/instances";
import { LogCapture } from "../src/logs/capture";
import { createLogMetrics } from "../src/logs/log-metrics";
import { SecretBook } from "../src/logs/mask";

const FN: FunctionRef = { namespace: "team-a", name: "hello", revision: 3 };
const b64 = (s: string) => Buffer.from(s).toString("base64");
const POD: BackendInstance = {
  id: "node-abc",
  address: "http://10.0.0.9:8888",
  environment: { namespace: "default", name: "node" },
  startedAt: 0,
  specializeToken: "tok-adopted-5b1e9d2c7a4f",
};

/** A capture with the pool faked at its interface; publishes collected. */
function setUp() {
  const clock = new FakeClock();
  const published: LogLine[] = [];
  const pool = new Map<string, Tracked>();
  const book = new SecretBook();
  const limits = { linesPerSecond: 1000, bytesPerSecond: 1 << 20, burstSeconds: 1 };
  const capture = new LogCapture({
    publish: (_fn, line) => published.push(line),
    tracked: (id) => pool.get(id),
    limits,
    maxLineBytes: 16 * 1024,
    book,
    platformSecrets: [],
    metrics: createLogMetrics(new Registry()),
    logger: silentLogger(),
    clock,
  });
  const track = (state: Tracked["state"], fn?: FunctionRef): Tracked => {
    const t: Tracked = {
      instance: POD,
      envKey: "default/node",
      generation: 1,
      state,
      killing: false,
    };
    if (fn) t.function = fn;
    pool.set(POD.id, t);
    return t;
  };
  return { clock, capture, published, book, track };
}

describe("kubernetes log tagging", () => {
  it("masks an adopted pod's output with its function's secrets, read at adoption, and its specialize token", async () => {
    const { capture, published, book, track } = setUp();
    const asked: string[][] = [];
    const cluster: Record<string, Record<string, string>> = {
      db: { password: b64("hunter2-adopted-pw") },
      api: { key: b64("sk-live-0f9e8d7c") },
    };
    // The book-watched resolver, as the specializer has it; one name is gone from the cluster.
    const readConfig = book.watch((_ns, secrets): Promise<FunctionConfig> => {
      asked.push([...secrets]);
      const out: FunctionConfig = { secrets: {}, configmaps: {} };
      for (const s of secrets) {
        const data = cluster[s];
        if (!data)
          return Promise.reject(new FizzError("MISSING_CONFIG", `secret ${s} does not exist`));
        out.secrets[s] = data;
      }
      return Promise.resolve(out);
    });
    const adopted: AdoptedInstance[] = [
      { instance: POD, function: FN, concurrency: 1, specializedAt: 1 },
      { instance: { ...POD, id: "node-def" }, function: FN, concurrency: 1, specializedAt: 1 },
    ];
    let lookups = 0;
    await recordAdoptedSecrets({
      adopted,
      secretNames: (ns, name) => {
        lookups++;
        expect([ns, name]).to.deep.equal(["team-a", "hello"]);
        // The registry is not answering yet the first time: retried, not given up.
        if (lookups === 1) return Promise.reject(new FizzError("UNAVAILABLE", "no registry"));
        return Promise.resolve(["db", "gone", "api"]);
      },
      readConfig,
      logger: silentLogger(),
      signal: new AbortController().signal,
      sleep: () => Promise.resolve(),
    });
    expect(lookups).to.equal(2); // one function for both pods, asked again after the failure
    expect(asked).to.deep.equal([["db"], ["gone"], ["api"]]);
    track("specialized", FN);
    capture.line(
      POD,
      "stdout",
      "pw=hunter2-adopted-pw key=sk-live-0f9e8d7c tok=tok-adopted-5b1e9d2c7a4f",
    );
    expect(published.map((l) => l.line)).to.deep.equal(["pw=*** key=*** tok=***"]);
  });

  it("stops retrying an adopted function's secrets when the poolkeeper stops", async () => {
    const abort = new AbortController();
    let calls = 0;
    await recordAdoptedSecrets({
      adopted: [{ instance: POD, function: FN, concurrency: 1, specializedAt: 1 }],
      secretNames: () => {
        calls++;
        return Promise.reject(new Error("down"));
      },
      readConfig: () => Promise.reject(new Error("not reached")),
      logger: silentLogger(),
      signal: abort.signal,
      sleep: () => {
        if (calls === 3) abort.abort();
        return Promise.resolve();
      },
    });
    expect(calls).to.equal(3);
  });

  it("leaves a late line written while the pod was warm untagged, and tags what it wrote once assigned", () => {
    const { clock, capture, published, track } = setUp();
    const t = track("warm");
    const warmAt = clock.now();
    clock.t += 50;
    t.state = "specializing";
    capture.assign(POD.id, FN);
    const assignedAt = clock.now();
    clock.t += 500;
    // Both arrive now, after the assignment; only their timestamps tell them apart.
    capture.line(POD, "stdout", "runtime warming up", warmAt);
    capture.line(POD, "stdout", "loading hello", assignedAt + 1);
    t.state = "specialized";
    t.function = FN;
    capture.line(POD, "stdout", "still the runtime's", assignedAt - 1);
    capture.line(POD, "stdout", "the function speaks", clock.now());
    capture.line(POD, "stdout", "no timestamp: tagged by arrival");
    expect(published.map((l) => l.line)).to.deep.equal([
      "loading hello",
      "the function speaks",
      "no timestamp: tagged by arrival",
    ]);
  });
});
