import { spawn, type ChildProcess } from "node:child_process";
import path from "node:path";
import { expect } from "chai";
import { get, ROOT, startPlatform, type Platform } from "./helpers";
import { dumpLogsOnFailure, eventually, fizzOk } from "./probes";

/**
 * Issue 14, function logs end to end: a function's prints are captured by the poolkeeper, kept in
 * FIZZ_LOGS, served by the registry and shown by `fizz fn logs`, tagged with the request id the
 * gateway passed (the Node runtime's call markers).
 */
interface Line {
  namespace: string;
  function: string;
  revision: number;
  instanceId: string;
  stream: string;
  line: string;
  ts: number;
  requestId?: string;
}

const printer = (version: string) => `
module.exports = async () => {
  console.log("${version} says hello");
  console.error("${version} warns");
  return { status: 200, body: "ok" };
};
`;

/** `fizz fn logs -f` left running: its stdout as it arrives, Ctrl-C, its exit status. */
class Follow {
  out = "";
  err = "";
  private readonly exited: Promise<number | null>;

  constructor(private readonly child: ChildProcess) {
    child.stdout?.on("data", (d: Buffer) => (this.out += d.toString()));
    child.stderr?.on("data", (d: Buffer) => (this.err += d.toString()));
    this.exited = new Promise((resolve) => child.once("exit", (code) => resolve(code)));
  }

  static start(p: Platform, args: string[]): Follow {
    const bin = path.join(ROOT, "node_modules", ".bin", "fizz");
    return new Follow(
      spawn(bin, ["fn", "logs", ...args], {
        cwd: p.workDir,
        env: { ...process.env, FIZZ_REGISTRY_URL: p.registryUrl, FIZZ_TOKEN: p.adminToken },
        stdio: ["ignore", "pipe", "pipe"],
      }),
    );
  }

  lines(): Line[] {
    return this.out
      .split("\n")
      .filter((l) => l !== "")
      .map((l) => JSON.parse(l) as Line);
  }

  interrupt(): Promise<number | null> {
    this.child.kill("SIGINT");
    return this.exited;
  }

  kill(): void {
    this.child.kill("SIGKILL");
  }
}

describe("function logs, end to end", function () {
  this.timeout(180_000);
  let p: Platform;
  let follow: Follow | undefined;

  const call = async (requestId: string) => {
    const r = await get(`${p.gatewayUrl}/printer`, { headers: { "x-request-id": requestId } });
    expect(r.status, r.text).to.equal(200);
  };
  const logs = async (...args: string[]) =>
    (await fizzOk(p, ["fn logs --name printer", ...args].join(" "))).stdout;

  before(async () => {
    p = await startPlatform({ FIZZ_DRAIN_MS: "1000", FIZZ_KILL_GRACE_MS: "500" });
    await p.file("v1.js", printer("v1"));
    await p.file("v2.js", printer("v2"));
    await fizzOk(p, "env create --name node --image fizz/env-node --poolsize 2");
    await fizzOk(p, "fn create --name printer --env node --code v1.js --route /printer");
    await call("e2e-req-1");
  });
  after(async () => {
    follow?.kill();
    await p?.stop();
  });
  afterEach(dumpLogsOnFailure(() => p, 120));

  it("shows what the function printed, each line with its stream and request id", async () => {
    const out = await eventually(
      "both lines of the first call in fizz fn logs",
      async () => {
        const o = await logs();
        return o.includes("v1 says hello") && o.includes("v1 warns") ? o : undefined;
      },
      60_000,
      500,
    );
    const ts = String.raw`\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z`;
    expect(out).to.match(new RegExp(`^${ts} stdout \\[req e2e-req-1\\] v1 says hello$`, "m"));
    expect(out).to.match(new RegExp(`^${ts} stderr \\[req e2e-req-1\\] v1 warns$`, "m"));
    // The Fission spelling answers the same.
    expect((await fizzOk(p, "fn log --name printer")).stdout).to.include("v1 says hello");
  });

  it("shows only the last line with --tail 1", async () => {
    const out = await logs("--tail 1");
    expect(out.trim().split("\n")).to.have.length(1);
  });

  it("prints NDJSON with namespace, function, instance and request id with -o json", async () => {
    const lines = (await logs("-o json"))
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as Line);
    const hello = lines.find((l) => l.line === "v1 says hello");
    expect(hello).to.include({
      namespace: "default",
      function: "printer",
      stream: "stdout",
      requestId: "e2e-req-1",
    });
    expect(hello?.instanceId).to.be.a("string").and.not.equal("");
  });

  it("shows what a function printed while it loaded and why its load failed", async () => {
    await p.file(
      "broken.js",
      `console.log("connecting to redis...");\nthrow new Error("cannot start without redis");\n`,
    );
    await fizzOk(p, "fn create --name broken --env node --code broken.js --route /broken");
    const r = await get(`${p.gatewayUrl}/broken`);
    expect(r.status, r.text).to.be.at.least(500);
    const out = await eventually(
      "the broken function's loading lines",
      async () => {
        const o = (await fizzOk(p, "fn logs --name broken")).stdout;
        return o.includes("connecting to redis...") && o.includes("cannot start without redis")
          ? o
          : undefined;
      },
      60_000,
      500,
    );
    expect(out).to.match(/ stdout connecting to redis\.\.\.$/m);
    expect(out).to.match(
      / stderr .*default\/broken@\d+ failed to load: .*cannot start without redis$/m,
    );
  });

  it("keeps following with -f across an update that replaces the instance, and exits 0 on Ctrl-C", async () => {
    follow = Follow.start(p, ["--name", "printer", "-f", "--tail", "1", "-o", "json"]);
    const f = follow;
    // The history's last line shows that the follow is connected.
    await eventually("the follow's first line", () => f.lines().length >= 1, 60_000);
    await call("e2e-req-2");
    const before = await eventually(
      "the old instance's line in the follow",
      () => f.lines().find((l) => l.requestId === "e2e-req-2" && l.stream === "stdout"),
      60_000,
    );
    expect(before.line).to.equal("v1 says hello");
    await fizzOk(p, "fn update --name printer --code v2.js");
    await call("e2e-req-3");
    const after = await eventually(
      "the new instance's line in the same follow",
      () => f.lines().find((l) => l.requestId === "e2e-req-3" && l.stream === "stdout"),
      60_000,
    );
    expect(after.line).to.equal("v2 says hello");
    expect(after.instanceId).to.not.equal(before.instanceId);
    expect(after.revision).to.be.greaterThan(before.revision);
    expect(await f.interrupt(), f.err).to.equal(0);
    follow = undefined;
    // Nothing was printed twice.
    const keys = f.lines().map((l) => JSON.stringify(l));
    expect(new Set(keys).size).to.equal(keys.length);
  });
});
