import { randomBytes } from "node:crypto";
import { mkdir, readdir, readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { jetstreamManager } from "@nats-io/jetstream";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { expect } from "chai";
import { ARCHIVE_BUCKET, Codecs, subjects } from "@fizz/events";
import { natsConnectionOptions, request } from "@fizz/kit";
import { tarGz, zip, type TarEntry } from "../../shared/kit/test/archive-builders";
import { startPlatform, type Platform } from "../e2e/helpers";
import { dumpLogsOnFailure, sleep } from "../e2e/probes";

/**
 * Issue 11's controls, attacked on the platform as `npm start` runs it: hostile archives, a build
 * script that goes looking for the platform's credentials, a function after another's secrets,
 * other services asking the registry for secret values, and every way the API could echo one.
 */
describe("packages, builds and secrets resist attack (security)", function () {
  this.timeout(180_000);
  let p: Platform;
  const s = subjects(process.env.FIZZ_SUBJECT_PREFIX || undefined);
  const open: NatsConnection[] = [];
  const SECRET = `s3cr3t-${randomBytes(6).toString("hex")}`;
  const SECRET_B64 = Buffer.from(SECRET).toString("base64");

  before(async () => {
    p = await startPlatform();
    await ok("env", "create", "--name", "python", "--image", "fizz/env-python", "--poolsize", "1");
    await ok("env", "create", "--name", "node", "--image", "fizz/env-node", "--poolsize", "2");
  });
  after(async () => {
    await Promise.all(open.map((nc) => nc.close().catch(() => undefined)));
    await p?.stop();
  });
  afterEach(dumpLogsOnFailure(() => p, 100));

  async function ok(...args: string[]) {
    const r = await p.fizz(...args);
    expect(r.code, `fizz ${args.join(" ")}\n${r.stdout}\n${r.stderr}`).to.equal(0);
    return r;
  }

  /** Connects as a platform user; permission errors are collected, not thrown. */
  async function as(user: string) {
    const nc = await connect(natsConnectionOptions(p.natsUrlAs(user)));
    open.push(nc);
    const errors: string[] = [];
    void (async () => {
      for await (const st of nc.status()) if (st.type === "error") errors.push(String(st.error));
    })();
    return { nc, errors };
  }

  describe("hostile archives are refused with ARCHIVE_UNSAFE and nothing is stored", () => {
    /** Messages in the archive bucket's stream: a stored object adds at least one. */
    async function storedMessages(): Promise<number> {
      const { nc } = await as("registry");
      const jsm = await jetstreamManager(nc);
      try {
        return (await jsm.streams.info(`OBJ_${ARCHIVE_BUCKET}`)).state.messages;
      } catch {
        return 0; // the bucket does not exist yet
      }
    }

    async function upload(body: Buffer, type: string) {
      const res = await fetch(`${p.registryUrl}/v1/namespaces/default/archives?use=source`, {
        method: "POST",
        headers: { authorization: `Bearer ${p.adminToken}`, "content-type": type },
        body,
      });
      return { status: res.status, text: await res.text() };
    }

    const manyFiles: TarEntry[] = Array.from({ length: 10_001 }, (_, i) => ({
      name: `f${String(i).padStart(5, "0")}`,
      data: "",
    }));
    const cases: {
      attack: string;
      body: () => Buffer;
      type: string;
      entry: string;
      rule: string;
    }[] = [
      {
        attack: "../ traversal",
        body: () =>
          tarGz([
            { name: "ok.txt", data: "x" },
            { name: "../evil.txt", data: "x" },
          ]),
        type: "application/gzip",
        entry: "../evil.txt",
        rule: "path escapes the archive root",
      },
      {
        attack: "traversal in the middle of a zip path",
        body: () => zip([{ name: "a/../../evil.txt", data: "x" }]),
        type: "application/zip",
        entry: "a/../../evil.txt",
        rule: "path escapes the archive root",
      },
      {
        attack: "an absolute path",
        body: () => tarGz([{ name: "/etc/cron.d/evil", data: "x" }]),
        type: "application/gzip",
        entry: "/etc/cron.d/evil",
        rule: "absolute path",
      },
      {
        attack: "a symlink escaping the root",
        body: () => tarGz([{ name: "a/l", type: "2", linkname: "../../etc" }]),
        type: "application/gzip",
        entry: "a/l",
        rule: "symlink target escapes the archive root",
      },
      {
        attack: "an absolute symlink in a zip",
        body: () => zip([{ name: "l", data: "/etc/shadow", mode: 0o120777 }]),
        type: "application/zip",
        entry: "l",
        rule: "symlink target escapes the archive root",
      },
      {
        attack: "a hard link escaping the root",
        body: () => tarGz([{ name: "h", type: "1", linkname: "../../etc/shadow" }]),
        type: "application/gzip",
        entry: "h",
        rule: "hard link target is not an extracted file",
      },
      {
        attack: "a character device",
        body: () => tarGz([{ name: "dev", type: "3" }]),
        type: "application/gzip",
        entry: "dev",
        rule: "device file, FIFO or socket",
      },
      {
        attack: "a FIFO",
        body: () => tarGz([{ name: "fifo", type: "6" }]),
        type: "application/x-tar",
        entry: "fifo",
        rule: "device file, FIFO or socket",
      },
      {
        attack: "too many files (10 001 entries)",
        body: () => tarGz(manyFiles),
        type: "application/gzip",
        entry: "f10000",
        rule: "too many files",
      },
      {
        attack: "a zip bomb (compression ratio)",
        body: () => zip([{ name: "zeros", data: Buffer.alloc(16 * 1024 * 1024), deflate: true }]),
        type: "application/zip",
        entry: "zeros",
        rule: "compression ratio over the limit",
      },
      {
        attack: "a tar.gz bomb (compression ratio)",
        body: () => tarGz([{ name: "zeros", data: Buffer.alloc(16 * 1024 * 1024) }]),
        type: "application/gzip",
        entry: "zeros",
        rule: "compression ratio over the limit",
      },
    ];

    for (const c of cases) {
      it(`refuses ${c.attack}: 400 ARCHIVE_UNSAFE naming the entry and the rule, nothing stored`, async () => {
        const packagesBefore = await p.api("GET", "/v1/namespaces/default/packages");
        const before = await storedMessages();
        const r = await upload(c.body(), c.type);
        expect(r.status, r.text).to.equal(400);
        const err = (JSON.parse(r.text) as { error: { code: string; message: string } }).error;
        expect(err.code).to.equal("ARCHIVE_UNSAFE");
        expect(err.message).to.include(JSON.stringify(c.entry)).and.to.include(c.rule);
        expect(await storedMessages(), "objects in the archive bucket").to.equal(before);
        const packagesAfter = await p.api("GET", "/v1/namespaces/default/packages");
        expect(packagesAfter.text).to.equal(packagesBefore.text);
        // The spooled upload and its extraction are gone too.
        expect(await readdir(path.join(p.dataDir, "registry"))).to.deep.equal([]);
      });
    }

    it("still stores a harmless archive (the endpoint the attacks hit is live)", async () => {
      const before = await storedMessages();
      const r = await upload(
        tarGz([{ name: "main.py", data: "def main(c):\n  return 1\n" }]),
        "application/gzip",
      );
      expect(r.status, r.text).to.equal(201);
      expect(await storedMessages()).to.be.greaterThan(before);
    });
  });

  it("a build script finds no credentials: not in its env, other processes' environ, the data dir or the key file, and NATS and Redis refuse it", async () => {
    const creds = JSON.parse(await readFile(path.join(p.dataDir, "credentials.json"), "utf8")) as {
      nats: Record<string, string>;
      redis: Record<string, string>;
      adminToken: string;
      readToken: string;
    };
    const key = await readFile(path.join(p.dataDir, "secrets.key"));
    const valuables = [
      ...Object.values(creds.nats),
      ...Object.values(creds.redis),
      creds.adminToken,
      creds.readToken,
      key.toString("base64"),
      key.toString("utf8").trim(),
    ].filter((v) => v.length >= 8);
    const nats = new URL(p.natsUrl);
    const redis = new URL(p.redisUrl);
    const poolkeeper = p.pids().poolkeeper;
    const probe = `set +e
echo "== whoami $(id -u)"
echo "== env"
env
echo "== other processes' environ"
readable=0; denied=0
for f in /proc/[0-9]*/environ; do
  if tr '\\0' '\\n' < "$f" > "$HOME/.e" 2>/dev/null; then
    readable=$((readable+1)); grep -E '^(FIZZ_|NATS|REDIS)' "$HOME/.e" | sed "s|^|$f: |"
  else denied=$((denied+1)); fi
done 2>/dev/null
echo "environ readable $readable denied $denied"
echo "== data dir"
cat ${p.dataDir}/credentials.json 2>&1 | head -c 400; echo
cat ${p.dataDir}/admin-token 2>&1 | head -c 200; echo
ls ${p.dataDir} 2>&1 | head -5
echo "== secrets key"
base64 ${p.dataDir}/secrets.key 2>&1 | head -c 200; echo
echo "== poolkeeper"
kill -0 ${poolkeeper ?? 1} 2>&1 && echo "signal ALLOWED"
cat /proc/${poolkeeper ?? 1}/environ 2>&1 | head -c 200; echo
echo "== nats"
python3 - <<'EOF'
import socket
def talk(port, send):
    s = socket.create_connection(("${nats.hostname}", port), timeout=2)
    s.sendall(send)
    got = b""
    try:
        while len(got) < 4096:
            d = s.recv(4096)
            if not d: break
            got += d
    except Exception as e:
        got += (" [%s]" % type(e).__name__).encode()
    return got.decode("latin1")
print("nats says:", talk(${nats.port}, b'CONNECT {"verbose":false,"pedantic":false}\\r\\nSUB fizz.> 1\\r\\nPING\\r\\n').replace("\\r\\n", " | ")[-300:])
print("redis says:", talk(${redis.port}, b"PING\\r\\nKEYS *\\r\\nAUTH registry guess\\r\\n").replace("\\r\\n", " | "))
EOF
echo "== done"
`;
    const src = path.join(p.workDir, "probe-src");
    await mkdir(src, { recursive: true });
    await writeFile(path.join(src, "probe.sh"), probe);
    await writeFile(path.join(src, "main.py"), "def main(c):\n    return 'x'\n");
    const made = await p.fizz(
      "pkg",
      "create",
      "--name",
      "probe",
      "--env",
      "python",
      "--src",
      src,
      "--build-cmd",
      "sh ./probe.sh",
    );
    const pkg = await p.api("GET", "/v1/namespaces/default/packages/probe");
    const status = (pkg.json as { status: { buildState: string; buildLog: string } }).status;
    const log = status.buildLog;
    console.log(
      log
        .split("\n")
        .map((l) => `      | ${l}`)
        .join("\n"),
    );
    expect(made.code, made.stdout + made.stderr).to.equal(0);
    expect(status.buildState).to.equal("succeeded");
    expect(log).to.include("== done");
    for (const v of valuables)
      expect(log.includes(v), "a credential in the build log").to.equal(false);
    expect(log).to.not.match(/FIZZ_(NATS|REDIS|ADMIN|READ|SECRETS_KEY)/);
    expect(log).to.not.match(/^== whoami 0$/m);
    expect(log).to.match(/environ readable \d+ denied [1-9]/);
    expect(log).to.match(/credentials\.json: Permission denied/);
    expect(log).to.match(/secrets\.key: Permission denied/);
    expect(log).to.not.include("signal ALLOWED");
    expect(log).to.match(/nats says:.*Authorization Violation/);
    expect(log).to.not.match(/nats says:.*PONG/);
    expect(log).to.match(/redis says: -NOAUTH/);
    expect(log).to.not.match(/redis says:.*\+PONG/);
  });

  it("a function cannot read another function's secrets", async () => {
    await ok("secret", "create", "--name", "db", "--from-literal", `password=${SECRET}`);
    await ok("secret", "create", "--name", "other", "--from-literal", "password=theirs");
    const code = `const fs = require("node:fs");
module.exports = async (ctx) => {
  const q = ctx.query;
  if (q.dir !== undefined) return { status: 200, body: process.env.FIZZ_SECRETS_DIR };
  try { return { status: 200, body: "READ " + fs.readFileSync(q.path, "utf8") }; }
  catch (e) { return { status: 200, body: "denied " + e.code }; }
};
`;
    await p.file("holder.js", code);
    await ok(
      "fn",
      "create",
      "--name",
      "holder",
      "--env",
      "node",
      "--code",
      "holder.js",
      "--secret",
      "db",
    );
    await ok(
      "fn",
      "create",
      "--name",
      "thief",
      "--env",
      "node",
      "--code",
      "holder.js",
      "--secret",
      "other",
    );
    const ask = async (fn: string, query: string) => {
      const res = await fetch(`${p.gatewayUrl}/function/${fn}?${query}`);
      const text = await res.text();
      expect(res.status, text).to.equal(200);
      return text;
    };
    const holderDir = await ask("holder", "dir");
    const thiefDir = await ask("thief", "dir");
    expect(holderDir).to.not.equal(thiefDir);
    const target = `${holderDir}/default/db/password`;
    // Control: the holder reads its own secret.
    expect(await ask("holder", `path=${encodeURIComponent(target)}`)).to.equal(`READ ${SECRET}`);
    expect(await ask("thief", `path=${encodeURIComponent(target)}`)).to.match(
      /^denied E(ACCES|PERM)$/,
    );
    expect(
      await ask("thief", `path=${encodeURIComponent(`${thiefDir}/default/db/password`)}`),
    ).to.match(/^denied ENOENT/);
    expect(
      await ask("thief", `path=${encodeURIComponent(`${thiefDir}/default/other/password`)}`),
    ).to.equal("READ theirs");
  });

  it("only the poolkeeper may ask registry.config.read: the gateway and the app user are refused", async () => {
    const body = { namespace: "default", secrets: ["db"], configmaps: [] };
    // Control: the subject is live and answers the poolkeeper with the value.
    const pk = await as("poolkeeper");
    const reply = await request(pk.nc, s.registryConfigRead, Codecs.registryConfigRead, body, {
      sender: "security-test",
      timeoutMs: 5000,
    });
    expect(reply.secrets[0]?.data.password).to.equal(SECRET_B64);
    for (const user of ["gateway", "app"]) {
      const c = await as(user);
      let err: unknown;
      await request(c.nc, s.registryConfigRead, Codecs.registryConfigRead, body, {
        sender: "security-test",
        timeoutMs: 2000,
      }).catch((e: unknown) => (err = e));
      await sleep(200);
      expect(err, `registry.config.read answered the ${user} user`).to.not.equal(undefined);
      expect(c.errors.join(" "), user).to.match(/Permissions Violation for Publish/);
    }
  });

  it("the REST API and change events never carry a secret's value", async () => {
    const { nc } = await as("scheduler");
    const seen: string[] = [];
    const sub = nc.subscribe(`${s.prefix}.registry.changed.>`, {
      callback: (_e, m) => {
        seen.push(new TextDecoder().decode(m.data));
      },
    });
    await nc.flush();
    const value2 = `${SECRET}-v2`;
    const replies = [
      await p.api("POST", "/v1/namespaces/default/secrets", {
        name: "api",
        spec: { data: { token: Buffer.from(SECRET).toString("base64") } },
      }),
      await p.api("GET", "/v1/namespaces/default/secrets/api"),
      await p.api("GET", "/v1/namespaces/default/secrets"),
      await p.api("GET", "/v1/namespaces/default/secrets/db"),
      await p.api("PATCH", "/v1/namespaces/default/secrets/api", {
        spec: { data: { token: Buffer.from(value2).toString("base64") } },
      }),
      await p.api("GET", "/v1/namespaces/default/secrets/api"),
      await p.api("DELETE", "/v1/namespaces/default/secrets/api"),
    ];
    expect(replies.map((r) => r.status)).to.deep.equal([201, 200, 200, 200, 200, 200, 200]);
    await sleep(500);
    sub.unsubscribe();
    expect(
      seen.some((m) => m.includes('"api"')),
      "change events were observed",
    ).to.equal(true);
    const forbidden = [SECRET, SECRET_B64, value2, Buffer.from(value2).toString("base64")];
    for (const r of replies)
      for (const f of forbidden) expect(r.text.includes(f), `REST reply ${r.text}`).to.equal(false);
    for (const m of seen)
      for (const f of forbidden) expect(m.includes(f), `change event ${m}`).to.equal(false);
    expect(replies[1]?.text).to.include("token");
  });
});
