import { randomBytes } from "node:crypto";
import { mkdir, writeFile } from "node:fs/promises";
import path from "node:path";
import { expect } from "chai";
import { Redis } from "ioredis";
import { startPlatform, type Platform } from "./helpers";
import { dumpLogsOnFailure, errorCode, timed } from "./probes";

/**
 * Issue 11, a function's configuration as a user sets it: environment variables, secrets and
 * configmaps read as files, in Python (single-file code) and Node (a package). Secret values are
 * never printed by the CLI, never logged, never stored in plaintext, and a missing secret fails
 * the call with an error that names it.
 */
describe("env vars, secrets and configmaps, end to end", function () {
  this.timeout(180_000);
  let p: Platform;
  // Unique, so a hit in logs or Redis can only be this value.
  const SECRET = `s3cr3t-${randomBytes(6).toString("hex")}`;
  const CONFIG = `fast-${randomBytes(4).toString("hex")}`;

  const PY = `import os

def main(context):
    what = context.query.get("what")
    if what == "env":
        return os.environ.get("GREETING", "<unset>")
    if what == "secret":
        with open(os.path.join(os.environ["FIZZ_SECRETS_DIR"], "default", "db", "password")) as f:
            return f.read()
    if what == "config":
        with open(os.path.join(os.environ["FIZZ_CONFIGS_DIR"], "default", "settings", "mode")) as f:
            return f.read()
    return "?"
`;
  const NODE = `const fs = require("node:fs");
const path = require("node:path");
exports.handler = async (ctx) => {
  const what = ctx.query.what;
  let body = "?";
  if (what === "env") body = process.env.GREETING ?? "<unset>";
  if (what === "secret")
    body = fs.readFileSync(path.join(process.env.FIZZ_SECRETS_DIR, "default", "db", "password"), "utf8");
  if (what === "config")
    body = fs.readFileSync(path.join(process.env.FIZZ_CONFIGS_DIR, "default", "settings", "mode"), "utf8");
  return { status: 200, body };
};
`;

  before(async () => {
    p = await startPlatform();
    await ok("env", "create", "--name", "python", "--image", "fizz/env-python", "--poolsize", "1");
    await ok("env", "create", "--name", "node", "--image", "fizz/env-node", "--poolsize", "1");
    await p.file("conf.py", PY);
    const nodeSrc = path.join(p.workDir, "confnode");
    await mkdir(path.join(nodeSrc, "lib"), { recursive: true });
    await writeFile(path.join(nodeSrc, "index.js"), NODE);
  });
  after(async () => {
    await p?.stop();
  });
  afterEach(dumpLogsOnFailure(() => p, 120));

  async function ok(...args: string[]) {
    const r = await p.fizz(...args);
    expect(r.code, `fizz ${args.join(" ")}\n${r.stdout}\n${r.stderr}`).to.equal(0);
    return r;
  }

  async function call(fn: string, what: string) {
    const r = await timed(`${p.gatewayUrl}/function/${fn}?what=${what}`);
    expect(r.status, `${fn}?what=${what}: ${r.text || r.error}`).to.equal(200);
    return r.text;
  }

  it("creates a secret and a configmap; secret list and get show key names, never the value", async () => {
    const created = await ok(
      "secret",
      "create",
      "--name",
      "db",
      "--from-literal",
      `password=${SECRET}`,
    );
    expect(created.stdout + created.stderr).to.not.include(SECRET);
    await ok("configmap", "create", "--name", "settings", "--from-literal", `mode=${CONFIG}`);
    for (const args of [
      ["secret", "list"],
      ["secret", "list", "-o", "json"],
      ["secret", "get", "--name", "db"],
      ["secret", "get", "--name", "db", "-o", "json"],
    ]) {
      const r = await ok(...args);
      expect(r.stdout + r.stderr, `fizz ${args.join(" ")}`).to.not.include(SECRET);
      expect(r.stdout + r.stderr).to.not.include(Buffer.from(SECRET).toString("base64"));
    }
    expect((await ok("secret", "get", "--name", "db")).stdout).to.include("password");
    expect((await ok("configmap", "get", "--name", "settings")).stdout).to.include(CONFIG);
  });

  it("a Python function (single file) sees its env var, secret and configmap", async () => {
    await ok(
      "fn",
      "create",
      "--name",
      "confpy",
      "--env",
      "python",
      "--code",
      "conf.py",
      "--env-var",
      "GREETING=hi",
      "--secret",
      "db",
      "--configmap",
      "settings",
    );
    expect(await call("confpy", "env")).to.equal("hi");
    expect(await call("confpy", "secret")).to.equal(SECRET);
    expect(await call("confpy", "config")).to.equal(CONFIG);
  });

  it("a Node function (package) sees its env var, secret and configmap", async () => {
    await ok(
      "fn",
      "create",
      "--name",
      "confnode",
      "--env",
      "node",
      "--src",
      path.join(p.workDir, "confnode"),
      "--entrypoint",
      "index.handler",
      "--env-var",
      "GREETING=hi",
      "--secret",
      "db",
      "--configmap",
      "settings",
    );
    expect(await call("confnode", "env")).to.equal("hi");
    expect(await call("confnode", "secret")).to.equal(SECRET);
    expect(await call("confnode", "config")).to.equal(CONFIG);
  });

  it("refuses a platform variable (FIZZ_X) as a function env var, naming it, in the CLI and the API", async () => {
    const r = await p.fizz(
      "fn",
      "create",
      "--name",
      "badenv",
      "--env",
      "python",
      "--code",
      "conf.py",
      "--env-var",
      "FIZZ_X=1",
    );
    expect(r.code).to.not.equal(0);
    expect(r.stderr).to.include("FIZZ_X");
    const api = await p.api("POST", "/v1/namespaces/default/functions", {
      name: "badenv",
      spec: {
        environment: "python",
        code: { filename: "conf.py", content: Buffer.from(PY).toString("base64") },
        env: { FIZZ_X: "1" },
      },
    });
    expect(api.status, api.text).to.equal(400);
    const err = (api.json as { error: { code: string; field?: string; message: string } }).error;
    expect(err.code).to.equal("VALIDATION_FAILED");
    expect(`${err.field ?? ""} ${err.message}`).to.include("FIZZ_X");
    expect(err.field ?? "").to.match(/^spec\.env/);
    expect((await p.fizz("fn", "get", "--name", "badenv")).code).to.not.equal(0);
  });

  it("a function naming a missing secret fails its first call with MISSING_CONFIG naming the secret", async () => {
    await ok(
      "fn",
      "create",
      "--name",
      "nosecret",
      "--env",
      "python",
      "--code",
      "conf.py",
      "--secret",
      "nosuch",
    );
    const r = await timed(`${p.gatewayUrl}/function/nosecret?what=env`);
    expect(r.status, r.text).to.be.at.least(500);
    expect(errorCode(r), r.text).to.equal("MISSING_CONFIG");
    expect(r.text).to.include("nosuch");
  });

  it("the secret's value is in no platform log line and nowhere in Redis in plaintext", async () => {
    const encodings = [SECRET, Buffer.from(SECRET).toString("base64")];
    const leaks = p.logs.filter((l) => encodings.some((e) => l.includes(e)));
    expect(leaks, "log lines holding the secret").to.deep.equal([]);
    // The registry's own Redis user sees everything the registry stores.
    const redis = new Redis(p.redisUrlAs("registry"), {
      lazyConnect: true,
      maxRetriesPerRequest: 1,
    });
    await redis.connect();
    try {
      const dump = await dumpRedis(redis);
      expect(dump.keys, "the scan found the registry's keys").to.be.greaterThan(0);
      expect(dump.text, "the secret's key name is stored").to.include("password");
      for (const e of encodings)
        expect(
          dump.text.includes(e),
          `Redis holds ${e === SECRET ? "the value" : "its base64"}`,
        ).to.equal(false);
    } finally {
      redis.disconnect();
    }
  });
});

/** Every value of every key the user may read, as one string. */
async function dumpRedis(redis: Redis): Promise<{ keys: number; text: string }> {
  const parts: string[] = [];
  let keys = 0;
  let cursor = "0";
  do {
    const [next, batch] = await redis.scan(cursor, "COUNT", 500);
    cursor = next;
    for (const key of batch) {
      let value: unknown;
      try {
        const type = await redis.type(key);
        if (type === "string") value = await redis.get(key);
        else if (type === "hash") value = await redis.hgetall(key);
        else if (type === "list") value = await redis.lrange(key, 0, -1);
        else if (type === "set") value = await redis.smembers(key);
        else if (type === "zset") value = await redis.zrange(key, 0, -1, "WITHSCORES");
        else if (type === "stream") value = await redis.xrange(key, "-", "+");
        else continue;
      } catch {
        continue; // a key outside the user's pattern
      }
      keys++;
      parts.push(key, JSON.stringify(value));
    }
  } while (cursor !== "0");
  return { keys, text: parts.join("\n") };
}
