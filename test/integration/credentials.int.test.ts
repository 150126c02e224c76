import { expect } from "chai";
import { spawnSync } from "node:child_process";
import { readFileSync, statSync, writeFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { ensureCredentials } from "../../scripts/lib/credentials.mjs";

const ROOT = path.resolve(import.meta.dirname, "../..");

/** The launcher's secrets (scripts/lib/credentials.mjs) and the k8s Secret generator. */
describe("generated credentials", () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(path.join(tmpdir(), "fizz-creds-"));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  const mode = (f: string) => statSync(path.join(dir, f)).mode & 0o777;

  it("writes the admin token and credentials.json owner-only, and the data dir 0711", () => {
    const c = ensureCredentials(dir);
    expect(mode("admin-token")).to.equal(0o600);
    expect(mode("credentials.json")).to.equal(0o600);
    expect(mode(".")).to.equal(0o711);
    expect(readFileSync(path.join(dir, "admin-token"), "utf8").trim()).to.equal(c.adminToken);
    expect(c.adminToken).to.match(/^[A-Za-z0-9_-]{43}$/);
    expect(Object.keys(c.nats).sort()).to.deep.equal(
      ["app", "gateway", "kubewatcher", "poolkeeper", "registry", "scheduler"].sort(),
    );
    // The poolkeeper has no Redis user (it reads the Object Store and the registry).
    expect(Object.keys(c.redis).sort()).to.deep.equal(["registry", "scheduler"]);
    const all = [c.adminToken, c.readToken, ...Object.values(c.nats), ...Object.values(c.redis)];
    expect(new Set(all).size, "every secret is distinct").to.equal(all.length);
  });

  it("reuses them on the next start, and generates only what is missing", () => {
    const first = ensureCredentials(dir);
    expect(ensureCredentials(dir)).to.deep.equal(first);
    const file = path.join(dir, "credentials.json");
    const stored = JSON.parse(readFileSync(file, "utf8")) as typeof first;
    delete (stored.nats as Record<string, string | undefined>).app;
    writeFileSync(file, JSON.stringify(stored), { mode: 0o644 });
    const third = ensureCredentials(dir);
    expect(third.adminToken).to.equal(first.adminToken);
    expect(third.nats.registry).to.equal(first.nats.registry);
    expect(third.nats.app).to.be.a("string").and.not.equal(first.nats.app);
    expect(mode("credentials.json"), "a loosened file is made owner-only again").to.equal(0o600);
  });

  it("refuses a credentials.json that is not JSON, naming the file", () => {
    writeFileSync(path.join(dir, "credentials.json"), "{ not json");
    expect(() => ensureCredentials(dir)).to.throw(/credentials\.json is not valid JSON/);
  });

  it("prints Kubernetes Secrets that keep saved credentials with --credentials", () => {
    const c = ensureCredentials(dir);
    const r = spawnSync(
      process.execPath,
      [
        path.join(ROOT, "scripts", "k8s-secrets.mjs"),
        "--credentials",
        path.join(dir, "credentials.json"),
      ],
      { encoding: "utf8" },
    );
    expect(r.status, r.stderr).to.equal(0);
    for (const name of ["fizz-credentials", "fizz-nats", "fizz-redis"])
      expect(r.stdout).to.include(`name: ${name}`);
    const admin = /admin-token: (\S+)/.exec(r.stdout)?.[1] ?? "";
    expect(Buffer.from(admin, "base64").toString()).to.equal(c.adminToken);
    // The secrets are base64 in the YAML, never in clear.
    expect(r.stdout).to.not.include(c.nats.gateway);
    expect(r.stdout).to.include("redis-scheduler-password");
    expect(r.stdout).to.not.include("redis-poolkeeper-password");
    const acl = Buffer.from(/users\.acl: (\S+)/.exec(r.stdout)?.[1] ?? "", "base64").toString();
    expect(acl).to.match(/^user scheduler on /m);
    expect(acl).to.not.match(/^user poolkeeper /m);
  });
});
