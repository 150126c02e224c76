import { expect } from "chai";
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { freePort, startNats, startRedis, waitFor, type TestServer } from "@fizz/testkit";
import { ROOT } from "./helpers";

/**
 * Services started before NATS and Redis exist must wait for them, say so in their logs, report
 * not-ready, and become ready once the servers appear, without a restart.
 */
describe("services waiting for NATS and Redis", function () {
  this.timeout(120_000);
  const services = ["registry", "scheduler", "poolkeeper", "gateway", "kubewatcher"] as const;
  const children: ChildProcess[] = [];
  const logs = new Map<string, string>();
  let servers: TestServer[] = [];
  let dataDir = "";

  after(async () => {
    for (const c of children) c.kill("SIGKILL");
    await Promise.all(servers.map((s) => s.cleanup()));
    if (dataDir) await rm(dataDir, { recursive: true, force: true });
  });

  it("stay not-ready while NATS and Redis are away, log what they wait for, then become ready", async () => {
    const natsPort = await freePort();
    const redisPort = await freePort();
    dataDir = await mkdtemp(path.join(tmpdir(), "fizz-deps-"));
    const ops: Record<string, number> = {};
    for (const svc of services) ops[svc] = await freePort();
    const env = {
      ...process.env,
      FIZZ_NATS_URL: `nats://127.0.0.1:${natsPort}`,
      FIZZ_REDIS_URL: `redis://127.0.0.1:${redisPort}`,
      FIZZ_REGISTRY_PORT: String(ops.registry),
      // The registry refuses to start without a token (only probes are used here).
      FIZZ_ADMIN_TOKEN: "deps-test-admin-token-0123456789",
      FIZZ_SCHEDULER_PORT: String(ops.scheduler),
      FIZZ_POOLKEEPER_PORT: String(ops.poolkeeper),
      FIZZ_GATEWAY_PORT: String(await freePort()),
      FIZZ_GATEWAY_OPS_PORT: String(ops.gateway),
      FIZZ_KUBEWATCHER_PORT: String(ops.kubewatcher),
      FIZZ_WORKDIR: path.join(dataDir, "work"),
    };
    for (const svc of services) {
      const child = spawn(
        process.execPath,
        ["--import", "tsx", path.join("services", svc, "src", "main.ts")],
        {
          cwd: ROOT,
          env,
          stdio: ["ignore", "pipe", "pipe"],
        },
      );
      logs.set(svc, "");
      const collect = (d: Buffer) => logs.set(svc, (logs.get(svc) ?? "") + d.toString());
      child.stdout.on("data", collect);
      child.stderr.on("data", collect);
      children.push(child);
    }
    const readyz = async (svc: string) => {
      try {
        return (await fetch(`http://127.0.0.1:${ops[svc]}/readyz`)).status;
      } catch {
        return 0;
      }
    };
    // Every service is alive (answers) but not ready.
    for (const svc of services) {
      await waitFor(async () => (await readyz(svc)) === 503, {
        timeoutMs: 30_000,
        what: `${svc} answering 503`,
      });
    }
    await waitFor(() => [...logs.values()].every((l) => /waiting for NATS/.test(l)), {
      timeoutMs: 15_000,
      what: "every service logging that it waits for NATS",
    });
    expect(logs.get("registry")).to.match(/waiting for (NATS|Redis)/);

    servers = [await startNats({ port: natsPort }), await startRedis({ port: redisPort })];
    for (const svc of services) {
      await waitFor(async () => (await readyz(svc)) === 200, {
        timeoutMs: 30_000,
        what: `${svc} ready`,
      });
    }
    for (const c of children) expect(c.exitCode, "no service gave up and exited").to.equal(null);
  });
});
