import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { expect } from "chai";
import { Redis } from "ioredis";
import {
  API_VERSION,
  HttpTrigger,
  TimeTrigger,
  redisKeys,
  type AnyObject,
  type KindPlural,
} from "@fizz/events";
import { freePort, startNats, startRedis, type TestServer } from "@fizz/testkit";
import { launchPlatform } from "../../scripts/lib/platform.mjs";
import { ROOT } from "../e2e/helpers";
import { eventually } from "../e2e/probes";
import { wireError } from "../lib/json-answer.js";

/**
 * Validation matches execution (issue 9): what the registry accepts, every service can run, and
 * what slipped into the store anyway cannot take a service down. On the real platform and its
 * supervisor (the launcher `npm start` uses, on a NATS and Redis of the test's own so the store
 * can be written behind the registry's back, as an attacker with Redis access would):
 * - the timer that used to exhaust the scheduler's memory is refused through the CLI and REST,
 *   and written straight into Redis it is marked failed while the scheduler stays up (no restart,
 *   none needed after a kill either) and keeps firing the other timers;
 * - an environment with a host command is refused;
 * - a route shadowing the gateway's /healthz is refused, and one stored anyway is skipped by the
 *   gateway, which still answers its own /healthz and the other routes.
 */
describe("validation: what the registry accepts, the platform can run (security)", function () {
  this.timeout(180_000);
  let nats: TestServer;
  let redis: TestServer;
  let client: Redis;
  let dataDir: string;
  let launched: Awaited<ReturnType<typeof launchPlatform>>;
  let token: string;
  const logs: string[] = [];
  const keys = redisKeys();

  before(async () => {
    [nats, redis] = await Promise.all([startNats(), startRedis()]);
    client = new Redis(redis.url, { maxRetriesPerRequest: 1 });
    // In the store before any service starts: what crashed the scheduler on every restart.
    await seed(timer("bomb", "@every 99999999999h"));
    await seed(timer("never", "0 0 30 2 *"));
    await seed(route("shadow", { path: "/healthz" }));
    dataDir = await mkdtemp(path.join(tmpdir(), "fizz-security-"));
    const ownToken = randomBytes(24).toString("base64url");
    launched = await launchPlatform({
      dataDir: path.join(dataDir, ".fizz"),
      natsUrl: nats.url,
      redisUrl: redis.url,
      gatewayPort: await freePort(),
      registryPort: await freePort(),
      env: { FIZZ_LOG_LEVEL: "info", FIZZ_ADMIN_TOKEN: ownToken },
      onLog: (name: string, line: string) => {
        logs.push(`[${name}] ${line}`);
        if (logs.length > 5000) logs.shift();
      },
    }).catch((err: unknown) => {
      console.error(logs.slice(-60).join("\n"));
      throw err;
    });
    token = await adminToken(ownToken);
    expect((await api("POST", "environments", envBody())).status).to.equal(201);
    const fn = await api("POST", "functions", {
      name: "hello",
      spec: {
        environment: "nodejs",
        code: {
          filename: "hello.js",
          content: Buffer.from("module.exports = async () => 'hi';\n").toString("base64"),
        },
      },
    });
    expect(fn.status, JSON.stringify(fn.body)).to.equal(201);
  });
  after(async () => {
    await launched?.stop();
    client?.disconnect();
    await Promise.all([nats?.cleanup(), redis?.cleanup()]);
    if (dataDir) await rm(dataDir, { recursive: true, force: true });
  });
  afterEach(function () {
    if (this.currentTest?.state === "failed") console.error(logs.slice(-80).join("\n"));
  });

  it("refuses the memory-exhausting timer through the CLI and REST, naming spec.cron, storing nothing", async () => {
    const cli = await fizz(
      "timer",
      "create",
      "--name",
      "bomb2",
      "--function",
      "hello",
      "--cron",
      "@every 99999999999h",
    );
    expect(cli.code, cli.stdout).to.equal(1);
    expect(cli.stderr)
      .to.match(/VALIDATION_FAILED/)
      .and.to.match(/spec\.cron/);
    const rest = await api("POST", "timetriggers", {
      name: "bomb3",
      spec: { function: "hello", cron: "0 0 30 2 *" },
    });
    expect([rest.status, rest.error().code, rest.error().field]).to.deep.equal([
      400,
      "VALIDATION_FAILED",
      "spec.cron",
    ]);
    expect(rest.error().message).to.match(/never fires/);
    for (const name of ["bomb2", "bomb3"]) {
      expect(await client.exists(keys.obj("timetriggers", "default", name))).to.equal(0);
    }
  });

  it("a bad timer written straight into Redis is marked failed; the scheduler stays up and fires the others, also after a restart", async () => {
    const ok = await api("POST", "timetriggers", {
      name: "every-second",
      spec: { function: "hello", cron: "@every 1s" },
    });
    expect(ok.status, JSON.stringify(ok.body)).to.equal(201);
    await schedulerFires();
    expect(launched.restarts("scheduler")).to.equal(0);
    expect(logs.some((l) => /timer failed/.test(l) && l.includes("default/bomb"))).to.equal(true);
    expect(logs.some((l) => /timer failed/.test(l) && /at most 366 days/.test(l))).to.equal(true);

    // It used to crash again on every restart: a restart now reads the same store and runs.
    const before = launched.restarts("scheduler");
    launched.kill("scheduler");
    await launched.restarted("scheduler", before, 60_000);
    await schedulerFires();
  });

  it("refuses an environment with a host command, naming spec.command, storing nothing", async () => {
    const cli = await fizz(
      "env",
      "create",
      "--name",
      "evil",
      "--image",
      "acme/x",
      "--command",
      "sh -c id",
    );
    expect(cli.code, cli.stdout).to.equal(1);
    expect(cli.stderr)
      .to.match(/ENV_COMMAND_DISABLED/)
      .and.to.match(/spec\.command/);
    const rest = await api("POST", "environments", {
      name: "evil",
      spec: { image: "fizz/env-node", command: ["sh", "-c", "cat /etc/shadow"] },
    });
    expect([rest.status, rest.error().code, rest.error().field]).to.deep.equal([
      400,
      "ENV_COMMAND_DISABLED",
      "spec.command",
    ]);
    const patch = await api("PATCH", "environments/nodejs", { spec: { command: ["sh"] } });
    expect([patch.status, patch.error().code]).to.deep.equal([400, "ENV_COMMAND_DISABLED"]);
    expect(await client.exists(keys.obj("environments", "default", "evil"))).to.equal(0);
    const stored = JSON.parse(
      (await client.get(keys.obj("environments", "default", "nodejs"))) ?? "{}",
    ) as { spec?: { command?: unknown } };
    expect(stored.spec?.command).to.equal(undefined);
  });

  it("refuses a route shadowing /healthz; one stored anyway is skipped and the gateway keeps serving", async () => {
    const cli = await fizz(
      "route",
      "create",
      "--function",
      "hello",
      "--name",
      "h2",
      "--url",
      "/healthz",
    );
    expect(cli.code, cli.stdout).to.equal(1);
    expect(cli.stderr)
      .to.match(/VALIDATION_FAILED/)
      .and.to.match(/spec\.path/);
    for (const spec of [
      { path: "/HEALTHZ" },
      { prefix: "/function/" },
      { path: "/a/../healthz" },
    ]) {
      const rest = await api("POST", "httptriggers", {
        name: "h3",
        spec: { function: "hello", ...spec },
      });
      expect(rest.status, JSON.stringify(spec)).to.equal(400);
      expect(rest.error().field).to.match(/^spec\.(path|prefix)$/);
    }
    expect(await client.exists(keys.obj("httptriggers", "default", "h3"))).to.equal(0);

    const good = await api("POST", "httptriggers", {
      name: "hello",
      spec: { function: "hello", path: "/hello" },
    });
    expect(good.status, JSON.stringify(good.body)).to.equal(201);
    const served = await eventually(
      "the good route answers",
      async () => {
        const r = await fetch(`${launched.gatewayUrl}/hello`);
        const text = await r.text();
        return r.status === 200 ? text : undefined;
      },
      60_000,
      250,
    );
    expect(served).to.equal("hi");
    const health = await fetch(`${launched.gatewayUrl}/healthz`);
    expect(health.status).to.equal(200);
    expect(await health.text()).to.not.equal("hi");
    expect(logs.some((l) => /not served/.test(l) && l.includes("default/shadow"))).to.equal(true);
  });

  async function schedulerFires(): Promise<void> {
    const metricsUrl = `http://127.0.0.1:${launched.ports.scheduler}/metrics`;
    let last = "";
    const read = async () => {
      try {
        last = await (await fetch(metricsUrl)).text();
      } catch (err) {
        last = String(err);
      }
      const num = (re: RegExp) => Number(re.exec(last)?.[1] ?? 0);
      return {
        failed: num(/^fizz_scheduler_timers_failed(?:\{[^}]*\})? (\d+)/m),
        // Fired on time or, on a busy machine, a little late: either way the timer runs.
        fired:
          num(/^fizz_scheduler_timer_ticks_total\{outcome="fired"[^}]*\} (\d+)/m) +
          num(/^fizz_scheduler_timer_ticks_total\{outcome="catchup"[^}]*\} (\d+)/m),
      };
    };
    const first = await eventually(
      "the scheduler fires the good timer and holds the bad ones as failed",
      async () => {
        const m = await read();
        return m.failed === 2 && m.fired >= 1 ? m : undefined;
      },
      60_000,
      250,
    ).catch((err: unknown) => {
      throw new Error(
        `${(err as Error).message}\n${last
          .split("\n")
          .filter((l) => l.includes("timer"))
          .join("\n")}`,
      );
    });
    await eventually(
      "the scheduler keeps firing",
      async () => (await read()).fired >= first.fired + 2 || undefined,
      20_000,
      250,
    );
  }

  async function api(method: string, pathAndKind: string, body?: unknown) {
    const r = await fetch(`${launched.registryUrl}/v1/namespaces/default/${pathAndKind}`, {
      method,
      headers: { "content-type": "application/json", authorization: `Bearer ${token}` },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    const text = await r.text();
    const answer: unknown = text ? JSON.parse(text) : undefined;
    return { status: r.status, body: answer, error: () => wireError(answer) };
  }

  function fizz(...args: string[]) {
    const env = {
      ...process.env,
      FIZZ_REGISTRY_URL: launched.registryUrl,
      FIZZ_GATEWAY_URL: launched.gatewayUrl,
      FIZZ_TOKEN: token,
    };
    return new Promise<{ code: number; stdout: string; stderr: string }>((resolve, reject) => {
      const child = spawn(path.join(ROOT, "node_modules", ".bin", "fizz"), args, {
        cwd: dataDir,
        env,
        stdio: ["ignore", "pipe", "pipe"],
      });
      let stdout = "";
      let stderr = "";
      child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
      child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
      child.once("error", reject);
      child.once("exit", (code) => resolve({ code: code ?? -1, stdout, stderr }));
    });
  }

  /** The admin token the registry accepts: the launcher's generated one, or ours. */
  async function adminToken(own: string): Promise<string> {
    const file = path.join(dataDir, ".fizz", "admin-token");
    const l = launched as unknown as Record<string, unknown>;
    const candidates = [
      typeof l.adminToken === "string" ? l.adminToken : undefined,
      existsSync(file) ? readFileSync(file, "utf8").trim() : undefined,
      own,
    ].filter((t): t is string => t !== undefined);
    for (const t of candidates) {
      const r = await fetch(`${launched.registryUrl}/v1/namespaces/default/environments`, {
        headers: { authorization: `Bearer ${t}` },
      });
      await r.text();
      if (r.ok) return t;
    }
    throw new Error("the registry accepts none of the admin tokens the launcher could have set");
  }

  async function seed(obj: AnyObject): Promise<void> {
    const kind: KindPlural = obj.kind === "TimeTrigger" ? "timetriggers" : "httptriggers";
    const { namespace: ns, name } = obj.metadata;
    await client
      .multi()
      .set(keys.obj(kind, ns, name), JSON.stringify(obj))
      .sadd(keys.nsIndex(kind, ns), name)
      .sadd(keys.kindIndex(kind), `${ns}/${name}`)
      .exec();
  }
});

function envBody() {
  return { name: "nodejs", spec: { image: "fizz/env-node", poolSize: 1 } };
}

function meta(name: string) {
  const at = new Date().toISOString();
  return {
    namespace: "default",
    name,
    uid: `uid-${name}`,
    revision: 1,
    labels: {},
    createdAt: at,
    updatedAt: at,
  };
}

/** Through the stored schema, so the object is exactly what the registry itself would write. */
function timer(name: string, cron: string): AnyObject {
  return TimeTrigger.parse({
    apiVersion: API_VERSION,
    kind: "TimeTrigger",
    metadata: meta(name),
    spec: { function: "hello", cron },
  });
}

function route(name: string, spec: { path?: string; prefix?: string }): AnyObject {
  return HttpTrigger.parse({
    apiVersion: API_VERSION,
    kind: "HttpTrigger",
    metadata: meta(name),
    spec: { function: "hello", ...spec },
  });
}
