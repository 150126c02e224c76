import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import { connect } from "node:net";
import path from "node:path";
import { expect } from "chai";
import { ARCHIVE_BUCKET, archiveObjectName } from "@fizz/events";
import { Objm } from "@nats-io/obj";
import { connect as connectNats } from "@nats-io/transport-node";
import { startPlatform, type Platform } from "../e2e/helpers";

/**
 * User code is contained (issue 9, docs/security.md): on the real platform, a function tries what
 * an attacker's function would, and each attempt is refused. The uid-specific assertions need the
 * platform to run as root (CI does); elsewhere instances run as the launcher's user, and those
 * tests say so and skip.
 */

// One function that does whatever the test asks, with node built-ins only.
const PROBE = `
const fs = require("node:fs");
const net = require("node:net");
const http = require("node:http");

function attempt(fn) {
  try { return fn(); } catch (err) { return "error " + (err.code || err.message); }
}
function talk(host, port, send, wait = 1500) {
  return new Promise((resolve) => {
    let got = "";
    const s = net.connect(port, host, () => s.write(send));
    s.setEncoding("utf8");
    s.on("data", (d) => (got += d));
    s.on("error", (e) => resolve(got + " error " + e.code));
    s.on("close", () => resolve(got));
    setTimeout(() => { s.destroy(); resolve(got); }, wait);
  });
}
function post(port, path, body) {
  return new Promise((resolve) => {
    const req = http.request({ host: "127.0.0.1", port, path, method: "POST",
      headers: { "content-type": "application/json" }, timeout: 2000 }, (res) => {
      let t = ""; res.on("data", (d) => (t += d)); res.on("end", () => resolve({ status: res.statusCode, body: t }));
    });
    req.on("error", (e) => resolve({ status: 0, body: e.code }));
    req.on("timeout", () => req.destroy());
    req.end(JSON.stringify(body));
  });
}
function getJson(port, path) {
  return new Promise((resolve) => {
    const req = http.get({ host: "127.0.0.1", port, path, timeout: 1000 }, (res) => {
      let t = ""; res.on("data", (d) => (t += d));
      res.on("end", () => { try { resolve(JSON.parse(t)); } catch { resolve(undefined); } });
    });
    req.on("error", () => resolve(undefined));
    req.on("timeout", () => req.destroy());
  });
}
function listeningPorts() {
  const out = new Set();
  for (const f of ["/proc/net/tcp", "/proc/net/tcp6"]) {
    const lines = attempt(() => fs.readFileSync(f, "utf8").split("\\n").slice(1));
    if (!Array.isArray(lines)) continue;
    for (const l of lines) {
      const cols = l.trim().split(/\\s+/);
      if (cols[3] === "0A") out.add(parseInt(cols[1].split(":")[1], 16));
    }
  }
  return [...out];
}

module.exports = async (context) => {
  const q = context.body;
  switch (q.op) {
    case "whoami":
      return { uid: process.getuid(), workdir: process.env.FIZZ_WORKDIR, env: Object.keys(process.env) };
    case "read":
      return { outcome: attempt(() => fs.readFileSync(q.path, "utf8")) };
    case "list":
      return { outcome: attempt(() => fs.readdirSync(q.path).join(",")) };
    case "write":
      return { outcome: attempt(() => (fs.writeFileSync(q.path, "owned"), "written")) };
    case "talk":
      return { outcome: await talk(q.host, q.port, q.send) };
    case "hijack": {
      // Find warm instances on loopback and try to load this code into them.
      const ports = listeningPorts();
      const health = await Promise.all(ports.map((port) => getJson(port, "/healthz")));
      const warm = ports.filter((_, i) => health[i] && health[i].state === "warm");
      const results = await Promise.all(warm.map(async (port) => {
        const r = await post(port, "/v2/specialize", {
          function: { namespace: "default", name: "evil", revision: 1 },
          filename: "evil.js",
          code: Buffer.from("module.exports = async () => 'hijacked';\\n").toString("base64"),
        });
        return { port, status: r.status, body: r.body.slice(0, 200) };
      }));
      return { scanned: ports.length, results };
    }
    default:
      return { status: 400, body: "unknown op" };
  }
};
`;

const VICTIM = "module.exports = async () => ({ status: 200, body: 'victim ok' });\n";
const DOCUMENTED = new Set([
  "PORT",
  "HOST",
  "FIZZ_INSTANCE_ID",
  "FIZZ_WORKDIR",
  "FIZZ_PARENT_STDIN",
  "PYTHONUNBUFFERED",
  "PATH",
  "HOME",
  "TMPDIR",
  "LANG",
  "TZ",
  // Where the function finds its secrets and configmaps (docs/runtime-contract.md).
  "FIZZ_SECRETS_DIR",
  "FIZZ_CONFIGS_DIR",
]);

describe("containment: a function cannot reach other functions, the platform's files or its bus", function () {
  this.timeout(180_000);
  let p: Platform;
  let dataDir: string;
  const asRoot = process.getuid?.() === 0;

  async function ok(...args: string[]) {
    const r = await p.fizz(...args);
    expect(r.code, `fizz ${args.join(" ")}\n${r.stdout}\n${r.stderr}`).to.equal(0);
    return r;
  }
  async function probe(body: Record<string, unknown>): Promise<Record<string, unknown>> {
    const res = await fetch(`${p.gatewayUrl}/probe`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(body),
    });
    const text = await res.text();
    expect(res.status, text).to.equal(200);
    return JSON.parse(text) as Record<string, unknown>;
  }

  /** What a client without credentials hears from a server (the first reply line or two). */
  function anonymous(url: string, send: string): Promise<string> {
    const u = new URL(url);
    return new Promise((resolve) => {
      let got = "";
      const s = connect(Number(u.port), u.hostname, () => s.write(send));
      s.setEncoding("utf8");
      s.on("data", (d: string) => (got += d));
      s.on("error", () => resolve(got));
      s.on("close", () => resolve(got));
      setTimeout(() => (s.destroy(), resolve(got)), 1500);
    });
  }

  before(async () => {
    p = await startPlatform();
    dataDir = path.join(p.workDir, ".fizz");
    await p.file("probe.js", PROBE);
    await p.file("victim.js", VICTIM);
    await ok("env", "create", "--name", "nodejs", "--image", "fizz/env-node");
    await ok("env", "create", "--name", "other", "--image", "fizz/env-node", "--poolsize", "2");
    await ok(
      "fn",
      "create",
      "--name",
      "probe",
      "--env",
      "nodejs",
      "--code",
      "probe.js",
      "--route",
      "/probe",
    );
    await ok(
      "fn",
      "create",
      "--name",
      "victim",
      "--env",
      "other",
      "--code",
      "victim.js",
      "--route",
      "/victim",
    );
  });
  after(async () => {
    await p?.stop();
  });
  afterEach(function () {
    if (this.currentTest?.state === "failed") console.error(p.logs.slice(-80).join("\n"));
  });

  it("gives the function only the documented variables: no NATS, Redis or registry credentials, no tokens", async () => {
    const { env } = (await probe({ op: "whoami" })) as { env: string[] };
    expect(env.filter((k) => !DOCUMENTED.has(k))).to.deep.equal([]);
    expect(env).to.not.include("FIZZ_SPECIALIZE_TOKEN");
  });

  it("cannot read or list another function's instance directory", async function () {
    if (!asRoot) this.skip(); // instances get their own uid only when the platform runs as root
    const victim = await fetch(`${p.gatewayUrl}/victim`);
    expect(await victim.text()).to.equal("victim ok");
    const instances = path.join(dataDir, "work", "instances");
    const me = (await probe({ op: "whoami" })) as { uid: number; workdir: string };
    expect(me.uid).to.not.equal(0);
    expect((await probe({ op: "list", path: instances })).outcome).to.equal("error EACCES");
    // The victim's directory name is not listable, but an attacker may guess it: use the real one.
    const { readdirSync } = await import("node:fs");
    const others = readdirSync(instances).filter((d) => d !== path.basename(me.workdir));
    expect(others.length).to.be.greaterThan(0);
    for (const d of others) {
      expect((await probe({ op: "list", path: path.join(instances, d) })).outcome).to.equal(
        "error EACCES",
      );
      expect(
        (await probe({ op: "read", path: path.join(instances, d, "victim.js") })).outcome,
      ).to.match(/^error (EACCES|ENOENT)$/);
    }
  });

  it("cannot read the platform's credentials or admin token, nor /etc/shadow, nor write into the data dir", async function () {
    if (!asRoot) this.skip(); // as the launcher's own user the files are the function's too
    const targets = [
      path.join(dataDir, "credentials.json"),
      path.join(dataDir, "admin-token"),
      "/etc/shadow",
    ];
    for (const target of targets) {
      const { outcome } = await probe({ op: "read", path: target });
      expect(outcome, target).to.equal(existsSync(target) ? "error EACCES" : "error ENOENT");
    }
    expect((await probe({ op: "write", path: path.join(dataDir, "planted") })).outcome).to.equal(
      "error EACCES",
    );
    expect(existsSync(path.join(dataDir, "planted"))).to.equal(false);
  });

  it("cannot load its own code into another pool's warm instance (specialize needs the instance's token)", async () => {
    const { results } = (await probe({ op: "hijack" })) as {
      results: Array<{ port: number; status: number; body: string }>;
    };
    // The "other" environment keeps two warm instances: the scan must have found some.
    expect(results.length, JSON.stringify(results)).to.be.greaterThan(0);
    for (const r of results) expect(r.status, JSON.stringify(r)).to.equal(401);
    const victim = await fetch(`${p.gatewayUrl}/victim`);
    expect(await victim.text()).to.equal("victim ok");
  });

  it("cannot use NATS or Redis without credentials", async function () {
    // The locks themselves are the "bus" part of issue 9 (the launcher's embedded servers). A
    // harness that hands the platform open servers cannot show the function being refused.
    const hello = await anonymous(p.natsUrl, 'CONNECT {"verbose":false}\r\nPING\r\n');
    if (/PONG/.test(hello)) this.skip();
    const nats = new URL(p.natsUrl);
    const pub = await probe({
      op: "talk",
      host: nats.hostname,
      port: Number(nats.port),
      send: 'CONNECT {"verbose":false,"pedantic":false}\r\nPUB fizz.v1.poolkeeper.retire 2\r\n{}\r\nPING\r\n',
    });
    expect(pub.outcome).to.match(/-ERR 'Authorization Violation'|-ERR 'Authentication/);
    expect(pub.outcome).to.not.match(/PONG/);
    const redis = new URL(p.redisUrl);
    const set = await probe({
      op: "talk",
      host: redis.hostname,
      port: Number(redis.port),
      send: "SET fizz:v1:code:owned owned\r\n",
    });
    expect(set.outcome).to.match(/-NOAUTH|-NOPERM|-WRONGPASS/);
  });

  it("never serves a code blob that was tampered with in the store", async () => {
    const source = "module.exports = async () => 'genuine';\n";
    await p.file("genuine.js", source);
    await ok(
      "fn",
      "create",
      "--name",
      "genuine",
      "--env",
      "nodejs",
      "--code",
      "genuine.js",
      "--route",
      "/genuine",
    );
    const digest = `sha256:${createHash("sha256").update(source).digest("hex")}`;
    // The attacker with write access to the Object Store (a leaked service credential; the
    // gateway and the app user are denied `$O.>`) replaces the blob under its content name.
    const asRegistry = new URL(p.natsUrlAs("registry"));
    const nc = await connectNats({
      servers: `${asRegistry.hostname}:${asRegistry.port}`,
      user: decodeURIComponent(asRegistry.username),
      pass: decodeURIComponent(asRegistry.password),
    });
    try {
      const objects = await new Objm(nc).open(ARCHIVE_BUCKET);
      expect(await objects.info(archiveObjectName(digest))).to.not.equal(null);
      await objects.putBlob(
        { name: archiveObjectName(digest) },
        new TextEncoder().encode("module.exports = async () => 'owned';\n"),
      );
    } finally {
      await nc.close();
    }
    const res = await fetch(`${p.gatewayUrl}/genuine`);
    const text = await res.text();
    expect(text).to.not.include("owned");
    expect(res.status, text).to.be.greaterThanOrEqual(500);
    expect(p.logs.some((l) => l.includes("does not match its digest"))).to.equal(true);
  });
});
