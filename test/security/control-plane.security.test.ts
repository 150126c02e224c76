import { spawn } from "node:child_process";
import { mkdir, readFile, stat } from "node:fs/promises";
import path from "node:path";
import { expect } from "chai";
import { ROOT, startPlatform, type Platform } from "../e2e/helpers";

/**
 * The control plane only obeys its admin (issue 9, docs/security.md): on the platform `npm start`
 * runs, an attacker without the token, or a web page the operator happens to open, tries to
 * create an environment whose `command` would run on the host. Every attempt is refused and
 * nothing is created.
 */

const ENVS = "/v1/namespaces/default/environments";
/** What the original attack created: a host command as root. */
const EVIL_ENV = {
  name: "pwn",
  spec: { image: "fizz/env-node", command: ["sh", "-c", "id > /tmp/fizz-pwned"] },
};

interface Answer {
  status: number;
  body: { error?: { code?: string; field?: string } } | undefined;
  headers: Headers;
}

async function call(
  url: string,
  init: { method?: string; headers?: Record<string, string>; body?: string } = {},
): Promise<Answer> {
  const res = await fetch(url, init);
  const text = await res.text();
  let body: Answer["body"];
  try {
    body = JSON.parse(text) as Answer["body"];
  } catch {
    body = undefined;
  }
  return { status: res.status, body, headers: res.headers };
}

function runFizz(args: string[], cwd: string, env: NodeJS.ProcessEnv) {
  return new Promise<{ code: number; stdout: string; stderr: string }>((resolve, reject) => {
    const child = spawn(path.join(ROOT, "node_modules", ".bin", "fizz"), args, {
      cwd,
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

describe("security: control-plane authentication", function () {
  this.timeout(120_000);
  let p: Platform;
  let adminToken: string;
  let readToken: string;
  const admin = () => ({ authorization: `Bearer ${adminToken}` });

  before(async () => {
    p = await startPlatform();
    const dataDir = path.join(p.workDir, ".fizz");
    adminToken = (await readFile(path.join(dataDir, "admin-token"), "utf8")).trim();
    const creds = JSON.parse(await readFile(path.join(dataDir, "credentials.json"), "utf8")) as {
      readToken: string;
    };
    readToken = creds.readToken;
  });
  after(async () => {
    await p?.stop();
  });

  async function environmentNames(): Promise<string[]> {
    const list = await call(`${p.registryUrl}${ENVS}`, { headers: admin() });
    expect(list.status).to.equal(200);
    return (list.body as unknown as { items: { metadata: { name: string } }[] }).items.map(
      (e) => e.metadata.name,
    );
  }

  it("writes the admin token and credentials owner-only (0600) under .fizz/", async () => {
    const dataDir = path.join(p.workDir, ".fizz");
    for (const file of ["admin-token", "credentials.json"]) {
      const mode = (await stat(path.join(dataDir, file))).mode & 0o777;
      expect(mode.toString(8), file).to.equal("600");
    }
    // Traversable for instances' own work dirs, but nobody else may list or write it.
    expect((await stat(dataDir)).mode & 0o066).to.equal(0);
    expect(adminToken).to.have.length.of.at.least(16);
  });

  it("refuses an unauthenticated write of a host-command environment, creating nothing", async () => {
    const res = await call(`${p.registryUrl}${ENVS}`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(EVIL_ENV),
    });
    expect(res.status).to.equal(401);
    expect(res.body?.error?.code).to.equal("UNAUTHENTICATED");
    expect(res.headers.get("www-authenticate")).to.match(/^Bearer/);
    const forged = adminToken.slice(0, -1) + (adminToken.endsWith("A") ? "B" : "A");
    const wrong = await call(`${p.registryUrl}${ENVS}`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${forged}` },
      body: JSON.stringify(EVIL_ENV),
    });
    expect(wrong.status).to.equal(401);
    expect(await environmentNames()).not.to.include("pwn");
  });

  it("refuses the browser-style cross-site text/plain POST, with or without the token", async () => {
    // What a web page can send with fetch(..., { mode: "no-cors" }) or a form: no preflight.
    const simple = {
      method: "POST",
      headers: { "content-type": "text/plain;charset=UTF-8", origin: "http://evil.example" },
      body: JSON.stringify(EVIL_ENV),
    };
    const anonymous = await call(`${p.registryUrl}${ENVS}`, simple);
    expect(anonymous.status).to.be.oneOf([401, 403, 415]);
    expect(anonymous.headers.get("access-control-allow-origin")).to.equal(null);
    // Even if the page somehow had the token, the Origin and the content type are refused.
    const withToken = await call(`${p.registryUrl}${ENVS}`, {
      ...simple,
      headers: { ...simple.headers, ...admin() },
    });
    expect(withToken.status).to.equal(403);
    expect(withToken.body?.error?.field).to.equal("Origin");
    const noOrigin = await call(`${p.registryUrl}${ENVS}`, {
      method: "POST",
      headers: { "content-type": "text/plain", ...admin() },
      body: JSON.stringify(EVIL_ENV),
    });
    expect(noOrigin.status).to.equal(415);
    expect(noOrigin.body?.error?.code).to.equal("UNSUPPORTED_MEDIA_TYPE");
    expect(await environmentNames()).not.to.include("pwn");
  });

  it("lets the read-only token list but not write or download code", async () => {
    const read = { authorization: `Bearer ${readToken}` };
    expect((await call(`${p.registryUrl}${ENVS}`, { headers: read })).status).to.equal(200);
    const write = await call(`${p.registryUrl}${ENVS}`, {
      method: "POST",
      headers: { "content-type": "application/json", ...read },
      body: JSON.stringify({ name: "reader", spec: { image: "fizz/env-node" } }),
    });
    expect(write.status).to.equal(403);
    expect(write.body?.error?.code).to.equal("FORBIDDEN");
    const code = await call(`${p.registryUrl}/v1/namespaces/default/functions/any/code`, {
      headers: read,
    });
    expect(code.status).to.equal(403);
    expect(await environmentNames()).not.to.include("reader");
  });

  it("keeps only /healthz and /readyz open", async () => {
    expect((await call(`${p.registryUrl}/healthz`)).status).to.equal(200);
    expect((await call(`${p.registryUrl}/readyz`)).status).to.equal(200);
    expect((await call(`${p.registryUrl}/metrics`)).status).to.equal(401);
  });

  it("keeps the gateway's per-function metrics off its public port", async () => {
    const pub = await fetch(`${p.gatewayUrl}/metrics`);
    expect(pub.status).to.equal(404);
    expect(await pub.text()).not.to.match(/fizz_function_/);
    const ops = await fetch(`${p.gatewayOpsUrl}/metrics`);
    expect(ops.status).to.equal(200);
  });

  it("the CLI finds .fizz/admin-token from a subdirectory, and explains a 401 elsewhere", async () => {
    const env: NodeJS.ProcessEnv = { ...process.env, FIZZ_REGISTRY_URL: p.registryUrl };
    delete env.FIZZ_TOKEN;
    delete env.FIZZ_DATA_DIR;
    const sub = path.join(p.workDir, "functions", "deep");
    await mkdir(sub, { recursive: true });
    const ok = await runFizz(
      ["env", "create", "--name", "cli-made", "--image", "fizz/env-node"],
      sub,
      env,
    );
    expect(ok.code, ok.stderr).to.equal(0);
    expect(await environmentNames()).to.include("cli-made");
    // The root directory has no .fizz/: no token, and the CLI says how to get one.
    const denied = await runFizz(["env", "list"], "/", env);
    expect(denied.code).to.equal(1);
    expect(denied.stderr).to.include("UNAUTHENTICATED");
    expect(denied.stderr).to.include(
      "set FIZZ_TOKEN or run from the directory where `npm start` runs",
    );
  });

  it("never logs a token", () => {
    const all = p.logs.join("\n");
    expect(all).not.to.include(adminToken);
    expect(all).not.to.include(readToken);
  });
});
