import { createHash } from "node:crypto";
import { readFile, stat, writeFile } from "node:fs/promises";
import path from "node:path";
import {
  ARCHIVE_BUCKET,
  Codecs,
  FizzError,
  archiveObjectName,
  type SpecializeRequest,
} from "@fizz/events";
import { request as natsRequest, type NatsConnection } from "@fizz/kit";
import { waitFor } from "@fizz/testkit";
import { expect } from "chai";
import { request } from "undici";
import { Harness, environment } from "./harness";

const b64 = (s: string) => Buffer.from(s).toString("base64");

/** The Object Store's metadata subject of an object name (nats.js layout, as kit writes it). */
const metaSubject = (name: string) =>
  `$O.${ARCHIVE_BUCKET}.M.${Buffer.from(name).toString("base64").replace(/\+/g, "-").replace(/\//g, "_")}`;

/**
 * What an attacker with write access to the store (or a corrupted disk) can do: make the object
 * named by `victim` point at the chunks of `source`. `claim: "victim"` also forges the metadata
 * digest, so only hashing the bytes while reading them catches it.
 */
async function tamper(
  nc: NatsConnection,
  victim: string,
  source: string,
  claim: "victim" | "source",
): Promise<void> {
  const got = await nc.request(
    `$JS.API.STREAM.MSG.GET.OBJ_${ARCHIVE_BUCKET}`,
    JSON.stringify({ last_by_subj: metaSubject(archiveObjectName(source)) }),
  );
  const msg = got.json<{ message: { data: string } }>().message;
  const meta = JSON.parse(Buffer.from(msg.data, "base64").toString()) as Record<string, unknown>;
  const sha = Buffer.from(victim.slice("sha256:".length), "hex");
  const forged = {
    ...meta,
    name: archiveObjectName(victim),
    ...(claim === "victim"
      ? { digest: `SHA-256=${sha.toString("base64").replace(/\+/g, "-").replace(/\//g, "_")}` }
      : {}),
  };
  // A JetStream publish (acknowledged): the stream captures the metadata subject.
  await nc.request(metaSubject(archiveObjectName(victim)), JSON.stringify(forged));
}

/**
 * Code and packages from the JetStream Object Store, config from the registry: real NATS with
 * JetStream, real runtimes through the process backend, the test playing the registry.
 */
describe("poolkeeper: code and packages from the Object Store, secrets from the registry", function () {
  this.timeout(90_000);
  const h = new Harness();
  const warm = (name: string) => h.pk.pool.status({ namespace: "default", name })?.warm ?? -1;
  const specialize = (data: SpecializeRequest) =>
    natsRequest(h.nc, h.s.poolkeeperSpecialize, Codecs.poolkeeperSpecialize, data, {
      sender: "test",
      timeoutMs: 30_000,
    });
  const fnRef = (name: string) => ({ namespace: "default", name, revision: 1 });
  async function get(address: string, instanceId: string) {
    const res = await request(address, { headers: { "x-fizz-instance": instanceId } });
    return { status: res.statusCode, text: await res.body.text() };
  }
  async function failure(p: Promise<unknown>): Promise<FizzError> {
    try {
      await p;
    } catch (err) {
      expect(err).to.be.instanceOf(FizzError);
      return err as FizzError;
    }
    throw new Error("expected a failure");
  }

  before(async () => {
    await h.setUp();
    h.environments.set("node", environment("node", "fizz/env-node", 1));
    h.environments.set("python", environment("python", "fizz/env-python", 1));
    h.answerRegistry();
    await h.startPoolkeeper();
    await h.pk.synced;
    await waitFor(() => warm("node") === 1 && warm("python") === 1, { timeoutMs: 30_000 });
  });
  after(() => h.tearDown());

  it("specializes a node package from an archive: its modules, its env, its secret and configmap files", async () => {
    const archive = await h.putPackage({
      "package.json": JSON.stringify({ name: "pkg", main: "index.js" }),
      "lib/greet.js": "exports.greet = () => 'hello from a package';\n",
      "index.js": [
        "const fs = require('node:fs');",
        "const path = require('node:path');",
        "const { greet } = require('./lib/greet');",
        "const read = (dir, ...p) => fs.readFileSync(path.join(process.env[dir], ...p), 'utf8');",
        "module.exports = async () => ({",
        "  greeting: greet(),",
        "  env: process.env.GREETING,",
        "  secret: read('FIZZ_SECRETS_DIR', 'default', 'db', 'password'),",
        "  config: read('FIZZ_CONFIGS_DIR', 'default', 'settings', 'mode'),",
        "});",
      ].join("\n"),
    });
    h.secrets.set("default/db", { password: b64("s3cret") });
    h.configmaps.set("default/settings", { mode: b64("fast") });
    const { instance } = await specialize({
      environment: { namespace: "default", name: "node" },
      function: fnRef("pkg-node"),
      archive,
      env: { GREETING: "hi" },
      secrets: ["db"],
      configmaps: ["settings"],
      concurrency: 2,
    });
    const res = await get(instance.address, instance.id);
    expect(res.status, res.text).to.equal(200);
    expect(JSON.parse(res.text)).to.deep.equal({
      greeting: "hello from a package",
      env: "hi",
      secret: "s3cret",
      config: "fast",
    });
    expect(h.configReads.at(-1)).to.deep.equal({
      namespace: "default",
      secrets: ["db"],
      configmaps: ["settings"],
    });
  });

  it("specializes a python package from an archive with entrypoint main.main", async () => {
    const archive = await h.putPackage({
      "helper.py": "def word():\n    return 'python package'\n",
      "main.py": "from helper import word\n\ndef main():\n    return word()\n",
    });
    const { instance } = await specialize({
      environment: { namespace: "default", name: "python" },
      function: fnRef("pkg-py"),
      archive,
      entrypoint: "main.main",
      concurrency: 1,
    });
    expect(await get(instance.address, instance.id)).to.deep.equal({
      status: 200,
      text: "python package",
    });
  });

  it("fails with MISSING_CONFIG naming a secret the registry does not have, and uses no instance", async () => {
    await waitFor(() => warm("node") === 1, { timeoutMs: 20_000 });
    // The earlier tests' refills (a python instance among them) may still be coming up: only the
    // node environment's instances say whether this specialize took one.
    const nodeIds = () =>
      h.pk.pool
        .list()
        .filter((t) => t.envKey.endsWith("/node"))
        .map((t) => t.instance.id);
    const before = nodeIds();
    const code = await h.putCode("x.js", "module.exports = async () => 'x';\n");
    const err = await failure(
      specialize({
        environment: { namespace: "default", name: "node" },
        function: fnRef("needs-secret"),
        code,
        secrets: ["nowhere"],
        concurrency: 1,
      }),
    );
    expect(err.code).to.equal("MISSING_CONFIG");
    expect(err.message).to.include("secret default/nowhere");
    expect(nodeIds()).to.deep.equal(before);
    expect(warm("node")).to.equal(1);
  });

  it("refuses single-file code whose stored bytes are not its digest (forged metadata): DIGEST_MISMATCH, nothing loaded", async () => {
    const good = await h.putCode("good.js", "module.exports = async () => 'good';\n");
    const evil = await h.putCode("evil.js", "module.exports = async () => 'owned';\n");
    await tamper(h.nc, good.digest, evil.digest, "victim");
    const err = await failure(
      specialize({
        environment: { namespace: "default", name: "node" },
        function: fnRef("tampered"),
        code: good,
        concurrency: 1,
      }),
    );
    expect(err.code).to.equal("DIGEST_MISMATCH");
    expect(err.field).to.equal("code.digest");
    expect(h.pk.pool.list().some((t) => t.function?.name === "tampered")).to.equal(false);
  });

  it("refuses an archive stored under another digest: DIGEST_MISMATCH, the instance that got part of it is replaced", async () => {
    await waitFor(() => warm("node") === 1, { timeoutMs: 20_000 });
    const good = await h.putPackage({ "index.js": "module.exports = async () => 'good';\n" });
    const evil = await h.putPackage({ "index.js": "module.exports = async () => 'owned';\n" });
    for (const claim of ["source", "victim"] as const) {
      await tamper(h.nc, good.digest, evil.digest, claim);
      const err = await failure(
        specialize({
          environment: { namespace: "default", name: "node" },
          function: fnRef(`tampered-pkg-${claim}`),
          archive: good,
          concurrency: 1,
        }),
      );
      expect(err.code, err.message).to.equal("DIGEST_MISMATCH");
      expect(err.field).to.equal("archive.digest");
      expect(h.pk.pool.list().some((t) => t.function?.name === `tampered-pkg-${claim}`)).to.equal(
        false,
      );
      await waitFor(() => warm("node") === 1, { timeoutMs: 20_000, what: "node pool refilled" });
    }
  });

  it("keeps a package archive on disk after its first read: a cache file changed on disk fails once and is replaced from the store; a store tampered later does not matter", async () => {
    const archive = await h.putPackage({ "index.js": "module.exports = async () => 'cached';\n" });
    const evil = await h.putPackage({ "index.js": "module.exports = async () => 'owned';\n" });
    const cached = path.join(h.workDir, "archive-cache", archive.digest.slice("sha256:".length));
    const run = async (name: string) => {
      await waitFor(() => warm("node") === 1, { timeoutMs: 20_000, what: "node pool refilled" });
      return specialize({
        environment: { namespace: "default", name: "node" },
        function: fnRef(name),
        archive,
        concurrency: 1,
      });
    };
    const first = await run("cached-1");
    expect(await get(first.instance.address, first.instance.id)).to.deep.equal({
      status: 200,
      text: "cached",
    });
    expect((await stat(path.dirname(cached))).mode & 0o777).to.equal(0o700);

    const bytes = await readFile(cached);
    const at = bytes.length - 40;
    bytes[at] = (bytes[at] ?? 0) ^ 0xff;
    await writeFile(cached, bytes);
    const err = await failure(run("cached-corrupt"));
    expect(err.code, err.message).to.equal("DIGEST_MISMATCH");
    expect(h.pk.pool.list().some((t) => t.function?.name === "cached-corrupt")).to.equal(false);

    const again = await run("cached-2");
    expect((await get(again.instance.address, again.instance.id)).text).to.equal("cached");

    await tamper(h.nc, archive.digest, evil.digest, "victim");
    const later = await run("cached-3");
    expect((await get(later.instance.address, later.instance.id)).text).to.equal("cached");
  });

  it("answers NOT_FOUND naming archive.digest for an archive not in the store", async () => {
    const digest = `sha256:${createHash("sha256").update("nothing").digest("hex")}`;
    const err = await failure(
      specialize({
        environment: { namespace: "default", name: "node" },
        function: fnRef("ghost"),
        archive: { digest, size: 10 },
        concurrency: 1,
      }),
    );
    expect(err.code).to.equal("NOT_FOUND");
    expect(err.field).to.equal("archive.digest");
  });
});
