import { spawn } from "node:child_process";
import path from "node:path";
import { Writable } from "node:stream";
import { expect } from "chai";
import { pino } from "pino";
import {
  ADMIN_TOKEN,
  READ_TOKEN,
  envBody,
  fnBody,
  registryEnv,
  snapshot,
  startRegistry,
  startStack,
  type Api,
  type Reply,
  type Running,
  type Stack,
} from "./helpers";

const D = "/v1/namespaces/default";
/** Same length as the admin token, differing only in the last character. */
const FORGED = ADMIN_TOKEN.slice(0, -1) + (ADMIN_TOKEN.endsWith("f") ? "e" : "f");

/** One request of every kind the API has. */
const EVERY_ROUTE: [method: string, path: string, body?: unknown][] = [
  ["GET", `${D}/environments`],
  ["GET", `${D}/environments/python`],
  ["POST", `${D}/environments`, envBody("intruder")],
  ["PATCH", `${D}/environments/python`, { spec: { image: "fizz/env-node" } }],
  ["DELETE", `${D}/environments/python`],
  ["GET", `${D}/functions/hello/code`],
  ["GET", "/metrics"],
  ["GET", "/v2/anything"],
];

function expectError(res: Reply, status: number, code: string, field?: string): void {
  expect(res.status, JSON.stringify(res.body)).to.equal(status);
  expect(res.body?.error?.code, JSON.stringify(res.body)).to.equal(code);
  if (field !== undefined) expect(res.body.error.field).to.equal(field);
}

describe("registry authentication", function () {
  this.timeout(60_000);
  let stack: Stack;
  let reg: Running;
  let anon: Api;
  let reader: Api;
  const logLines: string[] = [];

  before(async () => {
    stack = await startStack();
    // Everything the registry logs, at the most verbose level, to prove no token reaches it.
    const sink = new Writable({
      write(chunk: Buffer, _enc, done) {
        logLines.push(chunk.toString("utf8"));
        done();
      },
    });
    reg = await startRegistry(registryEnv(stack, { FIZZ_LOG_LEVEL: "trace" }), {
      logger: pino({ level: "trace" }, sink),
    });
    anon = reg.api.as(null);
    reader = reg.api.as(READ_TOKEN);
    expect((await reg.api.ns().create("environments", envBody("python"))).status).to.equal(201);
    expect((await reg.api.ns().create("functions", fnBody("hello", "python"))).status).to.equal(
      201,
    );
  });
  after(async () => {
    await reg?.svc.stop();
    await stack?.cleanup();
  });

  it("leaves /healthz and /readyz open", async () => {
    expect((await anon.call("GET", "/healthz")).status).to.equal(200);
    expect((await anon.call("GET", "/readyz")).status).to.equal(200);
  });

  it("answers 401 with a Bearer challenge on every other route without a token, changing nothing", async () => {
    const before = await snapshot(stack.client);
    for (const [method, path, body] of EVERY_ROUTE) {
      const res = await anon.call(method, path, body);
      expectError(res, 401, "UNAUTHENTICATED", "Authorization");
      expect(res.headers.get("www-authenticate"), `${method} ${path}`).to.equal(
        'Bearer realm="fizz"',
      );
    }
    expect(await snapshot(stack.client)).to.deep.equal(before);
  });

  it("answers 401 invalid_token to a forged token of the same length, and to other schemes", async () => {
    const before = await snapshot(stack.client);
    for (const [method, path, body] of EVERY_ROUTE) {
      const res = await reg.api.call(method, path, body, { token: FORGED });
      expectError(res, 401, "UNAUTHENTICATED");
      expect(res.headers.get("www-authenticate")).to.equal(
        'Bearer realm="fizz", error="invalid_token"',
      );
    }
    const basic = await anon.call("GET", `${D}/environments`, undefined, {
      headers: { authorization: `Basic ${Buffer.from(`admin:${ADMIN_TOKEN}`).toString("base64")}` },
    });
    expectError(basic, 401, "UNAUTHENTICATED");
    expect(await snapshot(stack.client)).to.deep.equal(before);
  });

  it("lets the read-only token list, get and read metrics", async () => {
    const list = await reader.ns().list("environments");
    expect(list.status).to.equal(200);
    expect(list.body.items.map((e: { metadata: { name: string } }) => e.metadata.name)).to.include(
      "python",
    );
    expect((await reader.ns().get("functions", "hello")).status).to.equal(200);
    expect((await reader.call("GET", "/metrics")).status).to.equal(200);
  });

  it("refuses writes and code downloads with the read-only token (403), changing nothing", async () => {
    const before = await snapshot(stack.client);
    const ns = reader.ns();
    for (const res of [
      await ns.create("environments", envBody("reader-made")),
      await ns.patch("environments", "python", { spec: { image: "fizz/env-node" } }),
      await ns.delete("functions", "hello"),
      await ns.code("hello"),
    ]) {
      expectError(res, 403, "FORBIDDEN", "Authorization");
    }
    expect(await snapshot(stack.client)).to.deep.equal(before);
    // The admin token still downloads code.
    expect((await reg.api.ns().code("hello")).status).to.equal(200);
  });

  it("refuses a text/plain, form or multipart body (415) even with the admin token, storing nothing", async () => {
    const before = await snapshot(stack.client);
    const json = JSON.stringify(envBody("simple-request"));
    for (const contentType of [
      "text/plain",
      "text/plain;charset=UTF-8",
      "application/x-www-form-urlencoded",
      "multipart/form-data; boundary=x",
    ]) {
      const res = await reg.api.call("POST", `${D}/environments`, undefined, {
        raw: json,
        contentType,
      });
      expectError(res, 415, "UNSUPPORTED_MEDIA_TYPE", "Content-Type");
      expect(res.body.error.message).to.include("application/json");
    }
    expect(await snapshot(stack.client)).to.deep.equal(before);
  });

  it("refuses a write from a foreign Origin even with the admin token, and sends no CORS headers", async () => {
    const before = await snapshot(stack.client);
    const origin = { origin: "https://evil.example" };
    const post = await reg.api.call("POST", `${D}/environments`, envBody("cross-site"), {
      headers: origin,
    });
    expectError(post, 403, "FORBIDDEN", "Origin");
    const preflight = await anon.call("OPTIONS", `${D}/environments`, undefined, {
      headers: { ...origin, "access-control-request-method": "POST" },
    });
    expect(preflight.status).to.equal(403);
    expect(preflight.headers.get("access-control-allow-origin")).to.equal(null);
    const read = await reg.api.call("GET", `${D}/environments`, undefined, { headers: origin });
    expect(read.status).to.equal(200);
    expect(read.headers.get("access-control-allow-origin")).to.equal(null);
    expect(await snapshot(stack.client)).to.deep.equal(before);
  });

  it("never writes a token into its logs", async () => {
    // Every path above ran against this registry; make sure failures are in the log too.
    await reg.api.call("POST", `${D}/environments`, undefined, { raw: "{broken" });
    const all = logLines.join("");
    expect(all).to.include("registry listening");
    for (const secret of [ADMIN_TOKEN, READ_TOKEN, FORGED]) expect(all).not.to.include(secret);
  });
});

describe("registry CORS and public metrics, when configured", function () {
  this.timeout(60_000);
  const CONSOLE = "https://console.example.com";
  let stack: Stack;
  let reg: Running;

  before(async () => {
    stack = await startStack();
    reg = await startRegistry(
      registryEnv(stack, { FIZZ_CORS_ORIGINS: CONSOLE, FIZZ_METRICS_PUBLIC: "true" }),
    );
  });
  after(async () => {
    await reg?.svc.stop();
    await stack?.cleanup();
  });

  it("answers a preflight from a configured origin and lets it write with a token", async () => {
    const preflight = await reg.api.call("OPTIONS", `${D}/environments`, undefined, {
      token: null,
      headers: {
        origin: CONSOLE,
        "access-control-request-method": "POST",
        "access-control-request-headers": "authorization, content-type",
      },
    });
    expect(preflight.status).to.equal(204);
    expect(preflight.headers.get("access-control-allow-origin")).to.equal(CONSOLE);
    expect(preflight.headers.get("access-control-allow-headers")).to.match(/Authorization/);
    const post = await reg.api.call("POST", `${D}/environments`, envBody("from-console"), {
      headers: { origin: CONSOLE },
    });
    expect(post.status, JSON.stringify(post.body)).to.equal(201);
    expect(post.headers.get("access-control-allow-origin")).to.equal(CONSOLE);
  });

  it("still refuses the configured origin without a token", async () => {
    const res = await reg.api.call("POST", `${D}/environments`, envBody("no-token"), {
      token: null,
      headers: { origin: CONSOLE },
    });
    expectError(res, 401, "UNAUTHENTICATED");
  });

  it("serves /metrics without a token when FIZZ_METRICS_PUBLIC=true, and nothing else", async () => {
    expect((await reg.api.call("GET", "/metrics", undefined, { token: null })).status).to.equal(
      200,
    );
    expectError(
      await reg.api.call("GET", `${D}/environments`, undefined, { token: null }),
      401,
      "UNAUTHENTICATED",
    );
  });
});

describe("registry with FIZZ_AUTH_DISABLED=true", function () {
  this.timeout(60_000);

  it("accepts requests without a token and says loudly that it does", async () => {
    const stack = await startStack();
    const lines: string[] = [];
    const sink = new Writable({
      write(chunk: Buffer, _enc, done) {
        lines.push(chunk.toString("utf8"));
        done();
      },
    });
    const env = registryEnv(stack, { FIZZ_AUTH_DISABLED: "true" });
    delete env.FIZZ_ADMIN_TOKEN;
    delete env.FIZZ_READ_TOKEN;
    const reg = await startRegistry(env, { logger: pino({ level: "info" }, sink) });
    try {
      const res = await reg.api.as(null).ns().create("environments", envBody("open"));
      expect(res.status).to.equal(201);
      const warning = lines
        .map((l) => JSON.parse(l) as { level?: number; msg?: string })
        .find((l) => l.level === 40);
      expect(warning?.msg).to.match(/FIZZ_AUTH_DISABLED=true: THE REGISTRY ACCEPTS ANYONE/);
    } finally {
      await reg.svc.stop();
      await stack.cleanup();
    }
  });
});

describe("registry process without a usable token", function () {
  this.timeout(60_000);
  const main = path.resolve(import.meta.dirname, "../src/main.ts");

  function startMain(env: Record<string, string>) {
    return new Promise<{ code: number | null; stderr: string }>((resolve, reject) => {
      const child = spawn(process.execPath, ["--import", "tsx", main], {
        env: { PATH: process.env.PATH ?? "", FIZZ_REGISTRY_PORT: "0", ...env },
        stdio: ["ignore", "ignore", "pipe"],
      });
      let stderr = "";
      child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
      child.once("error", reject);
      child.once("exit", (code) => resolve({ code, stderr }));
    });
  }

  it("exits 1 naming FIZZ_ADMIN_TOKEN when it is missing, and never echoes a bad token", async () => {
    const missing = await startMain({});
    expect(missing.code).to.equal(1);
    expect(missing.stderr).to.include("FIZZ_ADMIN_TOKEN: is required");
    const short = await startMain({ FIZZ_ADMIN_TOKEN: "tooshort-secret" });
    expect(short.code).to.equal(1);
    expect(short.stderr).to.include("FIZZ_ADMIN_TOKEN: must be at least 16 characters");
    expect(short.stderr).not.to.include("tooshort-secret");
  });
});
