import { createHash } from "node:crypto";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { Readable } from "node:stream";
import { FizzError, type Environment, type Instance, type SpecializeRequest } from "@fizz/events";
import { OFF_TRACER, setTracer, silentLogger, type Tracer } from "@fizz/kit";
import { waitFor } from "@fizz/testkit";
import { expect } from "chai";
import { instanceAgent, type InstanceAgent } from "../src/instance-http";
import { CodeCache } from "../src/code-cache";
import { missingConfig, type FunctionConfig } from "../src/function-config";
import { createMetrics } from "../src/metrics";
import { Pool } from "../src/pool";
import { SPECIALIZE_TAR_TYPE } from "../src/runtime-client";
import { createSpecializer } from "../src/specialize";
import type { BlobStore } from "../src/specialize-source";
import { FakeBackend, env } from "./fake-backend";

const CODE = Buffer.from("module.exports = async () => 'hi'\n");
const DIGEST = createHash("sha256").update(CODE).digest("hex");
const ARCHIVE = Buffer.alloc(300_000, 7);
const ARCHIVE_DIGEST = `sha256:${createHash("sha256").update(ARCHIVE).digest("hex")}`;

/** An in-memory Object Store; `corrupt` makes get() streams fail at the end, as the kit's does. */
class MemoryStore implements BlobStore {
  readonly blobs = new Map<string, Buffer>();
  reads = 0;
  corrupt = false;
  has(digest: string) {
    return Promise.resolve(this.blobs.has(digest));
  }
  getBuffer(digest: string) {
    this.reads++;
    return Promise.resolve(this.blobs.get(digest) ?? null);
  }
  /** linkInto's calls; it "links" whatever is stored (ArchiveCache.linkInto's answer). */
  readonly links: Array<{ digest: string; dir: string; bytes: number | undefined }> = [];
  linkInto(digest: string, dir: string, bytes?: number) {
    if (!this.blobs.has(digest)) return Promise.resolve(undefined);
    this.links.push({ digest, dir, bytes });
    return Promise.resolve(`.fizz-archive-${String(this.links.length).padStart(32, "0")}`);
  }
  get(digest: string) {
    this.reads++;
    const blob = this.blobs.get(digest);
    if (!blob) return Promise.resolve(null);
    const corrupt = this.corrupt;
    return Promise.resolve(
      Readable.from(
        (function* () {
          yield blob.subarray(0, 1000);
          if (corrupt) throw new FizzError("DIGEST_MISMATCH", "content does not match");
          yield blob.subarray(1000);
        })(),
      ),
    );
  }
}

function req(over: Partial<SpecializeRequest> = {}): SpecializeRequest {
  return {
    environment: { namespace: "default", name: "node" },
    function: { namespace: "default", name: "hello", revision: 2 },
    code: { filename: "hello.js", digest: `sha256:${DIGEST}`, size: CODE.length },
    concurrency: 7,
    ...over,
  };
}

describe("specialize (fake backend, stand-in runtime over HTTP)", () => {
  let server: http.Server;
  let answer: { status: number; body: unknown };
  let posts: Array<Record<string, unknown>>;
  let store: MemoryStore;
  let config: FunctionConfig & { calls: number };
  let backend: FakeBackend;
  let pool: Pool;
  let agent: InstanceAgent;
  let deferred: Array<() => void>;
  let specialized: Instance[];
  let registry: Map<string, Environment>;

  before(async () => {
    server = http.createServer((rq, rs) => {
      const chunks: Buffer[] = [];
      rq.on("data", (c: Buffer) => chunks.push(c));
      rq.on("error", () => undefined);
      rq.on("end", () => {
        const body = Buffer.concat(chunks);
        const tar = rq.headers["content-type"] === SPECIALIZE_TAR_TYPE;
        const nl = tar ? body.indexOf(10) : body.length;
        posts.push({
          ...(JSON.parse(body.subarray(0, nl).toString()) as Record<string, unknown>),
          token: rq.headers["x-fizz-specialize-token"],
          ...(tar
            ? {
                contentType: rq.headers["content-type"],
                contentLength: Number(rq.headers["content-length"]),
                headerBytes: nl + 1,
                archive: body.subarray(nl + 1),
              }
            : {}),
        });
        rs.writeHead(answer.status, { "content-type": "application/json" });
        rs.end(JSON.stringify(answer.body));
      });
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  });
  after(async () => {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  });

  beforeEach(() => {
    answer = { status: 200, body: { status: "specialized", loadMs: 1.5 } };
    posts = [];
    deferred = [];
    specialized = [];
    registry = new Map();
    store = new MemoryStore();
    store.blobs.set(`sha256:${DIGEST}`, CODE);
    store.blobs.set(ARCHIVE_DIGEST, ARCHIVE);
    config = { secrets: {}, configmaps: {}, calls: 0 };
    backend = new FakeBackend();
    backend.address = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    agent = instanceAgent();
    pool = new Pool({ backend, logger: silentLogger(), maxFailures: 3, cooldownMs: 60_000 });
  });
  afterEach(() => {
    pool.stop();
    agent.destroy();
  });

  function specializer(code: Buffer | null = CODE, cache = new CodeCache()) {
    if (code) store.blobs.set(`sha256:${DIGEST}`, code);
    else store.blobs.delete(`sha256:${DIGEST}`);
    return createSpecializer({
      pool,
      store,
      codeCache: cache,
      readConfig: (ns, secrets, configmaps) => {
        config.calls++;
        for (const n of secrets)
          if (!config.secrets[n]) return Promise.reject(missingConfig("secret", ns, n));
        for (const n of configmaps)
          if (!config.configmaps[n]) return Promise.reject(missingConfig("configmap", ns, n));
        const pick = (m: FunctionConfig["secrets"], names: string[]) =>
          Object.fromEntries(names.map((n) => [n, m[n]!]));
        return Promise.resolve({
          secrets: pick(config.secrets, [...secrets]),
          configmaps: pick(config.configmaps, [...configmaps]),
        });
      },
      lookupEnvironment: (ref) => Promise.resolve(registry.get(ref.name)),
      agent,
      timeoutMs: 2000,
      backendKind: "process",
      metrics: createMetrics(() => pool.counts()),
      logger: silentLogger(),
      afterReply: (fn) => deferred.push(fn),
      onSpecialized: (i) => specialized.push(i),
    });
  }

  async function rejection(p: Promise<unknown>): Promise<FizzError> {
    try {
      await p;
    } catch (err) {
      expect(err).to.be.instanceOf(FizzError);
      return err as FizzError;
    }
    throw new Error("expected a rejection");
  }

  const warm = () => pool.status({ namespace: "default", name: "node" })?.warm;

  it("puts the runtime's reported loadMs on the specialize span while traces record (cold-profile's row)", async () => {
    const attrs = new Map<string, Record<string, string | number | boolean>>();
    const recording: Tracer = {
      recording: true,
      startSpan: (name, kind, parent, initial) => {
        const a: Record<string, string | number | boolean> = { ...initial };
        attrs.set(name, a);
        return {
          context: OFF_TRACER.startSpan(name, kind, parent).context,
          setAttribute: (k, v) => void (a[k] = v),
          fail: () => undefined,
          end: () => undefined,
        };
      },
      shutdown: () => Promise.resolve(),
    };
    pool.upsert(env("node", { poolSize: 1 }));
    await waitFor(() => warm() === 1);
    setTracer(recording);
    try {
      await specializer()(req());
    } finally {
      setTracer(OFF_TRACER);
    }
    expect(attrs.get("poolkeeper.specialize")).to.include({
      "fizz.load_ms": 1.5,
      "fizz.outcome": "ok",
    });
  });

  it("pushes the code into a warm instance, answers it specialized, and refills only after the reply", async () => {
    pool.upsert(env("node", { poolSize: 2 }));
    await waitFor(() => warm() === 2);
    const { instance } = await specializer()(req({ entrypoint: "handler" }));
    expect(instance).to.include({ state: "specialized", concurrency: 7, backend: "process" });
    expect(instance.function).to.deep.equal({ namespace: "default", name: "hello", revision: 2 });
    expect(posts).to.have.length(1);
    expect(posts[0]).to.deep.include({
      instanceId: instance.id,
      filename: "hello.js",
      code: CODE.toString("base64"),
      entrypoint: "handler",
      concurrency: 7,
      digest: `sha256:${DIGEST}`,
      token: backend.list().find((i) => i.id === instance.id)?.specializeToken,
    });
    expect(posts[0]!.token).to.be.a("string");
    expect(backend.spawnCalls).to.equal(2);
    expect(specialized).to.have.length(0);
    for (const fn of deferred) fn();
    expect(specialized.map((i) => i.id)).to.deep.equal([instance.id]);
    await waitFor(() => warm() === 2);
  });

  it("refuses a tampered blob (other bytes under the digest) with DIGEST_MISMATCH and sends nothing", async () => {
    pool.upsert(env("node", { poolSize: 1 }));
    await waitFor(() => warm() === 1);
    const tampered = Buffer.from("module.exports = async () => 'owned'\n");
    const err = await rejection(specializer(tampered)(req()));
    expect(err.code).to.equal("DIGEST_MISMATCH");
    expect(err.field).to.equal("code.digest");
    expect(err.message).to.match(/tampered or corrupt/);
    expect(posts).to.have.length(0);
    expect(warm()).to.equal(1);
  });

  it("answers NOT_FOUND naming code.digest when the blob is missing, and takes no instance", async () => {
    pool.upsert(env("node", { poolSize: 1 }));
    await waitFor(() => warm() === 1);
    const err = await rejection(specializer(null)(req()));
    expect(err.code).to.equal("NOT_FOUND");
    expect(err.field).to.equal("code.digest");
    expect(warm()).to.equal(1);
  });

  it("on a runtime 500 answers FUNCTION_LOAD_FAILED with the loader's message, kills the instance, no retry", async () => {
    pool.upsert(env("node", { poolSize: 2 }));
    await waitFor(() => warm() === 2);
    const message = "hello.js:1: SyntaxError: Unexpected token";
    answer = {
      status: 500,
      body: { error: { code: "FUNCTION_LOAD_FAILED", message, retryable: false } },
    };
    const err = await rejection(specializer()(req()));
    expect(err.code).to.equal("FUNCTION_LOAD_FAILED");
    expect(err.message).to.equal(message);
    expect(posts).to.have.length(1);
    expect(backend.killed.map((k) => k.reason)).to.deep.equal(["function failed to load"]);
    for (const fn of deferred) fn();
    await waitFor(() => warm() === 2);
  });

  it("retries once with another instance when one fails, then answers INSTANCE_FAILED", async () => {
    pool.upsert(env("node", { poolSize: 3 }));
    await waitFor(() => warm() === 3);
    answer = { status: 409, body: { error: { code: "ALREADY_SPECIALIZED", message: "already" } } };
    const err = await rejection(specializer()(req()));
    expect(err.code).to.equal("INSTANCE_FAILED");
    expect(err.message).to.match(/409/);
    expect(posts).to.have.length(2);
    expect(new Set(posts.map((p) => p.instanceId)).size).to.equal(2);
    expect(backend.killed).to.have.length(2);
  });

  it("spawns an instance when the pool is empty (cold start)", async () => {
    pool.upsert(env("node", { poolSize: 0 }));
    const { instance } = await specializer()(req());
    expect(instance.state).to.equal("specialized");
    expect(backend.spawnCalls).to.equal(1);
  });

  it("does not spawn again when the spawn gate turns an empty-pool start away", async () => {
    pool.upsert(env("node", { poolSize: 0 }));
    let asked = 0;
    // The gate's refusal: no spawn slot before the caller's deadline.
    pool.spawnTaken = () => {
      asked++;
      return Promise.reject(
        new FizzError("UNAVAILABLE", "no spawn slot before the caller's deadline", {
          retryable: true,
        }),
      );
    };
    const err = await rejection(specializer()(req()));
    expect(err.code).to.equal("UNAVAILABLE");
    expect(asked).to.equal(1);
    expect(backend.spawnCalls).to.equal(0);
  });

  it("asks the registry about an environment it has not heard of, then serves it", async () => {
    registry.set("node", env("node", { poolSize: 0 }));
    const { instance } = await specializer()(req());
    expect(instance.environment).to.deep.equal({ namespace: "default", name: "node" });
  });

  it("answers UNKNOWN_ENVIRONMENT when the registry does not know it either", async () => {
    const err = await rejection(
      specializer()(req({ environment: { namespace: "default", name: "nope" } })),
    );
    expect(err.code).to.equal("UNKNOWN_ENVIRONMENT");
    expect(err.field).to.equal("environment");
  });

  it("answers UNKNOWN_IMAGE for an environment the backend cannot run", async () => {
    pool.upsert(env("node", { image: "unknown" }));
    const err = await rejection(specializer()(req()));
    expect(err.code).to.equal("UNKNOWN_IMAGE");
    expect(backend.spawnCalls).to.equal(0);
  });

  it("sends the function's env, secrets and configmaps with the code, resolved in its namespace", async () => {
    pool.upsert(env("node", { poolSize: 1 }));
    await waitFor(() => warm() === 1);
    config.secrets.db = { password: Buffer.from("s3cret").toString("base64") };
    config.configmaps.settings = { mode: Buffer.from("fast").toString("base64") };
    await specializer()(
      req({ env: { GREETING: "hi" }, secrets: ["db"], configmaps: ["settings"] }),
    );
    expect(posts[0]).to.deep.include({
      env: { GREETING: "hi" },
      secrets: { db: { password: Buffer.from("s3cret").toString("base64") } },
      configmaps: { settings: { mode: Buffer.from("fast").toString("base64") } },
      code: CODE.toString("base64"),
    });
  });

  it("fails with MISSING_CONFIG naming a missing secret, takes no instance and sends nothing", async () => {
    pool.upsert(env("node", { poolSize: 1 }));
    await waitFor(() => warm() === 1);
    const err = await rejection(specializer()(req({ secrets: ["nope"] })));
    expect(err.code).to.equal("MISSING_CONFIG");
    expect(err.message).to.match(/secret default\/nope/);
    expect(posts).to.have.length(0);
    expect(warm()).to.equal(1);
    expect(backend.killed).to.have.length(0);
  });

  it("sends no env, secrets or configmaps fields when the function has none", async () => {
    pool.upsert(env("node", { poolSize: 1 }));
    await waitFor(() => warm() === 1);
    await specializer()(req());
    expect(posts[0]).to.not.have.any.keys("env", "secrets", "configmaps");
  });

  it("reads a code blob from the store once, then from its cache", async () => {
    pool.upsert(env("node", { poolSize: 2 }));
    await waitFor(() => warm() === 2);
    const s = specializer();
    await s(req());
    await s(req());
    expect(store.reads).to.equal(1);
    expect(posts.map((p) => p.code)).to.deep.equal([
      CODE.toString("base64"),
      CODE.toString("base64"),
    ]);
  });

  it("streams an archive: the tar content type, its Content-Length, a JSON line, then the bytes", async () => {
    pool.upsert(env("node", { poolSize: 1 }));
    await waitFor(() => warm() === 1);
    config.secrets.db = { password: "cHc=" };
    const { instance } = await specializer()(
      req({
        code: undefined,
        archive: { digest: ARCHIVE_DIGEST, size: ARCHIVE.length },
        entrypoint: "main.handler",
        secrets: ["db"],
        env: { A: "1" },
      }),
    );
    expect(instance.state).to.equal("specialized");
    const post = posts[0]!;
    expect(post).to.deep.include({
      instanceId: instance.id,
      digest: ARCHIVE_DIGEST,
      entrypoint: "main.handler",
      concurrency: 7,
      env: { A: "1" },
      secrets: { db: { password: "cHc=" } },
      contentType: SPECIALIZE_TAR_TYPE,
    });
    expect(post).to.not.have.any.keys("code", "filename");
    expect((post.archive as Buffer).equals(ARCHIVE)).to.equal(true);
    expect(post.contentLength).to.equal((post.headerBytes as number) + ARCHIVE.length);
  });

  describe("the archive as a file in the instance's own directory (archiveFile)", () => {
    const goReq = () =>
      req({
        environment: { namespace: "default", name: "go" },
        code: undefined,
        archive: { digest: ARCHIVE_DIGEST, size: ARCHIVE.length },
      });
    const warmGo = () => pool.status({ namespace: "default", name: "go" })?.warm;
    const OWN = { uid: 54321, dir: "/nonexistent/instances/x" };

    it("hands a Go instance with its own uid and directory a link to the archive, with no body", async () => {
      backend.extra = OWN;
      pool.upsert(env("go", { image: "fizz/env-go", poolSize: 1 }));
      await waitFor(() => warmGo() === 1);
      await specializer()(goReq());
      // The archive's size goes with it: one too big to cache is not downloaded just to fail.
      expect(store.links).to.deep.equal([
        { digest: ARCHIVE_DIGEST, dir: OWN.dir, bytes: ARCHIVE.length },
      ]);
      const post = posts[0]!;
      expect(post).to.include({ digest: ARCHIVE_DIGEST, contentType: SPECIALIZE_TAR_TYPE });
      expect(post.archiveFile).to.match(/^\.fizz-archive-/);
      expect((post.archive as Buffer).length).to.equal(0);
      expect(post.contentLength).to.equal(post.headerBytes);
      expect(store.reads).to.equal(0);
    });

    it("streams the archive on the second attempt (a corrupt cached copy must not fail both)", async () => {
      backend.extra = OWN;
      pool.upsert(env("go", { image: "fizz/env-go", poolSize: 2 }));
      await waitFor(() => warmGo() === 2);
      answer = { status: 400, body: { error: { code: "DIGEST_MISMATCH", message: "no" } } };
      await rejection(specializer()(goReq()));
      expect(posts).to.have.length(2);
      expect(posts[0]!.archiveFile).to.be.a("string");
      expect(posts[1]).to.not.have.property("archiveFile");
      expect((posts[1]!.archive as Buffer).equals(ARCHIVE)).to.equal(true);
    });

    for (const [what, image, extra] of [
      ["a Node instance (its runtime reads no archiveFile)", "fizz/env-node", OWN],
      ["a Go instance without a uid of its own (no isolation)", "fizz/env-go", { dir: OWN.dir }],
      ["a Go instance with no directory (Kubernetes)", "fizz/env-go", { uid: OWN.uid }],
    ] as const) {
      it(`streams the archive as before to ${what}`, async () => {
        backend.extra = extra;
        pool.upsert(env("go", { image, poolSize: 1 }));
        await waitFor(() => warmGo() === 1);
        await specializer()(goReq());
        expect(store.links).to.deep.equal([]);
        expect(posts[0]).to.not.have.property("archiveFile");
        expect((posts[0]!.archive as Buffer).equals(ARCHIVE)).to.equal(true);
      });
    }
  });

  it("refuses an archive whose stream fails its digest check: DIGEST_MISMATCH on archive.digest, the instance killed, no retry", async () => {
    pool.upsert(env("node", { poolSize: 2 }));
    await waitFor(() => warm() === 2);
    store.corrupt = true;
    const err = await rejection(
      specializer()(
        req({ code: undefined, archive: { digest: ARCHIVE_DIGEST, size: ARCHIVE.length } }),
      ),
    );
    expect(err.code).to.equal("DIGEST_MISMATCH");
    expect(err.field).to.equal("archive.digest");
    expect(err.retryable).to.equal(false);
    expect(backend.killed.map((k) => k.reason)).to.deep.equal([
      "the archive could not be read from the store",
    ]);
    expect(posts).to.have.length(0);
  });

  it("refuses an archive longer than its recorded size, as the store's fault", async () => {
    pool.upsert(env("node", { poolSize: 1 }));
    await waitFor(() => warm() === 1);
    const err = await rejection(
      specializer()(
        req({ code: undefined, archive: { digest: ARCHIVE_DIGEST, size: ARCHIVE.length - 1 } }),
      ),
    );
    expect(err.code).to.equal("DIGEST_MISMATCH");
    expect(err.message).to.match(/longer than its/);
    expect(backend.killed).to.have.length(1);
  });

  it("answers NOT_FOUND naming archive.digest when the archive is not stored, and takes no instance", async () => {
    pool.upsert(env("node", { poolSize: 1 }));
    await waitFor(() => warm() === 1);
    const digest = `sha256:${"1".repeat(64)}`;
    const err = await rejection(
      specializer()(req({ code: undefined, archive: { digest, size: 1 } })),
    );
    expect(err.code).to.equal("NOT_FOUND");
    expect(err.field).to.equal("archive.digest");
    expect(warm()).to.equal(1);
  });

  it("refuses secrets too big for the archive form's header line before taking an instance", async () => {
    pool.upsert(env("node", { poolSize: 1 }));
    await waitFor(() => warm() === 1);
    config.secrets.big = { blob: "A".repeat(5 * 1024 * 1024) };
    const err = await rejection(
      specializer()(
        req({
          code: undefined,
          archive: { digest: ARCHIVE_DIGEST, size: ARCHIVE.length },
          secrets: ["big"],
        }),
      ),
    );
    expect(err.code).to.equal("PAYLOAD_TOO_LARGE");
    expect(err.message).to.not.include("AAAA");
    expect(warm()).to.equal(1);
  });
});
