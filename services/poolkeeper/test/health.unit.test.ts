import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { PassThrough } from "node:stream";
import { expect } from "chai";
import { instanceAgent, type InstanceAgent } from "../src/instance-http";
import { waitReady } from "../src/health";

/** waitReady: a readiness pipe first, /healthz polling as the fallback (a real HTTP server). */
describe("instance readiness (announced or polled)", function () {
  this.timeout(10_000);
  let agent: InstanceAgent;
  let server: Server;
  let address: string;
  let probes: number;
  let healthy: boolean;

  beforeEach(async () => {
    agent = instanceAgent();
    probes = 0;
    healthy = true;
    server = createServer((req, res) => {
      probes++;
      res.statusCode = healthy ? 200 : 503;
      res.end();
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    address = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterEach(async () => {
    agent.destroy();
    await new Promise((r) => server.close(r));
  });

  const never = new Promise<void>(() => undefined);

  it("takes the announcement without probing, and closes the pipe", async () => {
    const pipe = new PassThrough();
    pipe.write("rea");
    setTimeout(() => pipe.write("dy\n"), 5);
    const how = await waitReady(address, agent, { timeoutMs: 5000, exited: never, announce: pipe });
    expect(how).to.equal("announced");
    expect(probes).to.equal(0);
    expect(pipe.destroyed).to.equal(true);
  });

  it("leaves no grace timer behind once announced (a refill's grace is seconds long)", async () => {
    const timers = () => process.getActiveResourcesInfo().filter((r) => r === "Timeout").length;
    await new Promise((r) => setImmediate(r)); // mocha's own test timer is armed by now
    const before = timers();
    const pipe = new PassThrough();
    pipe.write("ready\n");
    const how = await waitReady(address, agent, {
      timeoutMs: 60_000,
      exited: never,
      announce: pipe,
      graceMs: 60_000,
    });
    expect(how).to.equal("announced");
    expect(timers()).to.equal(before);
  });

  it("polls at once when the pipe says anything else, or closes without a word", async () => {
    for (const say of ["hello\n", "ready-ish", undefined]) {
      const pipe = new PassThrough();
      if (say !== undefined) pipe.write(say);
      else pipe.end();
      // A grace period longer than the test's timeout: only an immediate fallback passes.
      const how = await waitReady(address, agent, {
        timeoutMs: 60_000,
        exited: never,
        announce: pipe,
        graceMs: 60_000,
      });
      expect(how, String(say)).to.equal("polled");
    }
  });

  it("polls after the grace period when the pipe stays silent", async () => {
    const how = await waitReady(address, agent, {
      timeoutMs: 5000,
      exited: never,
      announce: new PassThrough(),
    });
    expect(how).to.equal("polled");
    expect(probes).to.be.greaterThan(0);
  });

  it("gives up at the timeout when neither the pipe nor /healthz says ready", async () => {
    healthy = false;
    let err: unknown;
    await waitReady(address, agent, {
      timeoutMs: 400,
      exited: never,
      announce: new PassThrough(),
      // Longer than the test's own timeout: the spawn timeout bounds the grace period too.
      graceMs: 60_000,
    }).catch((e: unknown) => (err = e));
    expect(String(err)).to.match(/no healthy answer on \/healthz within 400 ms/);
  });

  it("without a pipe it polls, and an exit before readiness rejects", async () => {
    expect(
      await waitReady(address, agent, { timeoutMs: 5000, exited: never, announce: undefined }),
    ).to.equal("polled");
    healthy = false;
    const pipe = new PassThrough();
    let exit!: () => void;
    const exited = new Promise<void>((r) => (exit = r));
    const waiting = waitReady(address, agent, { timeoutMs: 5000, exited, announce: pipe });
    setTimeout(() => {
      exit();
      pipe.end();
    }, 20);
    let err: unknown;
    await waiting.catch((e: unknown) => (err = e));
    expect(String(err)).to.match(/exited before answering/);
  });
});
