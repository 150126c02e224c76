import { createHash } from "node:crypto";
import { expect } from "chai";
import { FizzError, type FunctionSpec } from "@fizz/events";
import { loadConfig } from "../src/config";
import {
  checkKind,
  checkName,
  decodeCode,
  mergeSpec,
  parseCreate,
  parsePatch,
  type ValidationOptions,
} from "../src/validation";

const opts: ValidationOptions = { backend: "process", codeMaxBytes: 16 };

function refused(fn: () => unknown): FizzError {
  try {
    fn();
  } catch (err) {
    expect(err).to.be.instanceOf(FizzError);
    return err as FizzError;
  }
  throw new Error("expected a FizzError");
}

describe("validation mapping", () => {
  it("maps the first issue to VALIDATION_FAILED with the field path and a readable message", () => {
    const err = refused(() =>
      parseCreate(
        "environments",
        { name: "e", spec: { image: "fizz/env-node", poolSize: 101 } },
        opts,
      ),
    );
    expect(err.code).to.equal("VALIDATION_FAILED");
    expect(err.field).to.equal("spec.poolSize");
    expect(err.message).to.equal("spec.poolSize: must be at most 100");
  });

  it("words type errors, integers and exclusive bounds", () => {
    expect(
      refused(() => parseCreate("environments", { name: "e", spec: { image: 3 } }, opts)).message,
    ).to.equal("spec.image: must be a string");
    expect(
      refused(() =>
        parseCreate(
          "environments",
          { name: "e", spec: { image: "fizz/env-node", poolSize: 1.5 } },
          opts,
        ),
      ).message,
    ).to.equal("spec.poolSize: must be an integer");
    const fn = { environment: "e", code: { filename: "a.js", content: "YQ==" } };
    expect(
      refused(() =>
        parseCreate("functions", { name: "f", spec: { ...fn, timeoutSeconds: 0 } }, opts),
      ).message,
    ).to.equal("spec.timeoutSeconds: must be greater than 0");
  });

  it("reports a bad name as INVALID_NAME and a missing one as VALIDATION_FAILED", () => {
    const bad = refused(() =>
      parseCreate("environments", { name: "No", spec: { image: "fizz/env-node" } }, opts),
    );
    expect([bad.code, bad.field]).to.deep.equal(["INVALID_NAME", "name"]);
    const missing = refused(() =>
      parseCreate("environments", { spec: { image: "fizz/env-node" } }, opts),
    );
    expect([missing.code, missing.field, missing.message]).to.deep.equal([
      "VALIDATION_FAILED",
      "name",
      "name: is required",
    ]);
    const ns = refused(() => checkName("a.b", "namespace"));
    expect([ns.code, ns.field]).to.deep.equal(["INVALID_NAME", "namespace"]);
  });

  it("answers NOT_FOUND for a kind that does not exist", () => {
    expect(refused(() => checkKind("pods")).code).to.equal("NOT_FOUND");
    expect(checkKind("httptriggers")).to.equal("httptriggers");
  });

  it("refuses a body that is not an object with INVALID_BODY", () => {
    for (const body of [undefined, null, [], "x", 3]) {
      expect(refused(() => parseCreate("environments", body, opts)).code).to.equal("INVALID_BODY");
    }
  });

  it("refuses unknown fields at the top and in the spec", () => {
    expect(
      refused(() =>
        parseCreate("environments", { name: "e", spec: { image: "fizz/env-node", pool: 1 } }, opts),
      ).field,
    ).to.equal("spec.pool");
    expect(refused(() => parsePatch("environments", { spec: {}, kind: "x" }, opts)).field).to.equal(
      "kind",
    );
  });

  it("refuses an image with no local runtime on the process backend only", () => {
    const body = { name: "e", spec: { image: "foo/bar" } };
    const err = refused(() => parseCreate("environments", body, opts));
    expect([err.code, err.field]).to.deep.equal(["UNKNOWN_IMAGE", "spec.image"]);
    expect(
      parseCreate("environments", body, { ...opts, backend: "kubernetes" }).spec,
    ).to.deep.include({ image: "foo/bar" });
    expect(
      parseCreate(
        "environments",
        { name: "e", spec: { image: "foo/bar", command: ["x"] } },
        { ...opts, allowEnvCommand: true },
      ).spec,
    ).to.deep.include({ command: ["x"] });
    expect(
      parseCreate("environments", { name: "e", spec: { image: "ghcr.io/a/env-node:20" } }, opts)
        .spec,
    ).to.deep.include({ poolSize: 3 });
  });

  it("decodes code, digests it and checks the decoded size against the limit", () => {
    const blob = decodeCode(
      { filename: "a.py", content: Buffer.from("hello").toString("base64") },
      16,
    );
    expect(blob.bytes.toString()).to.equal("hello");
    expect(blob.ref).to.deep.equal({
      filename: "a.py",
      digest: `sha256:${createHash("sha256").update("hello").digest("hex")}`,
      size: 5,
    });
    const big = refused(() =>
      decodeCode({ filename: "a.py", content: Buffer.alloc(17).toString("base64") }, 16),
    );
    expect([big.code, big.field]).to.deep.equal(["CODE_TOO_LARGE", "spec.code.content"]);
    expect(
      decodeCode({ filename: "a.py", content: Buffer.alloc(16).toString("base64") }, 16).ref.size,
    ).to.equal(16);
    expect(refused(() => decodeCode({ filename: "a.py", content: "YQ" }, 16)).field).to.equal(
      "spec.code.content",
    );
    expect(refused(() => decodeCode({ filename: "a.py", content: "" }, 16)).message).to.match(
      /is empty/,
    );
  });

  it("stores a function's code reference, not its content", () => {
    const req = parseCreate(
      "functions",
      { name: "f", spec: { environment: "e", code: { filename: "a.js", content: "YQ==" } } },
      opts,
    );
    expect(req.code?.bytes.toString()).to.equal("a");
    expect((req.spec as FunctionSpec).code).to.deep.equal(req.code?.ref);
    expect(req.spec).to.include({ minInstances: 0, maxInstances: 10 });
  });

  it("merges a patch: given fields replace, null unsets, new code replaces the reference", () => {
    const current = parseCreate(
      "functions",
      {
        name: "f",
        spec: { environment: "e", code: { filename: "a.js", content: "YQ==" }, concurrency: 4 },
      },
      opts,
    ).spec as FunctionSpec;
    const patch = parsePatch(
      "functions",
      { spec: { concurrency: null, maxInstances: 3, code: { filename: "b.js", content: "Yg==" } } },
      opts,
    );
    const merged = mergeSpec("functions", current, patch, opts);
    expect(merged.concurrency).to.equal(undefined);
    expect(merged.maxInstances).to.equal(3);
    expect(merged.code?.filename).to.equal("b.js");
    expect(merged.environment).to.equal("e");
  });

  it("validates the merged spec as a whole", () => {
    const current = { function: "f", path: "/a", methods: [] };
    const err = refused(() =>
      mergeSpec(
        "httptriggers",
        current,
        parsePatch("httptriggers", { spec: { prefix: "/b" } }, opts),
        opts,
      ),
    );
    expect([err.code, err.field]).to.deep.equal(["VALIDATION_FAILED", "spec.path"]);
  });

  it("checks labels on patch with the create rules", () => {
    expect(
      refused(() => parsePatch("environments", { labels: { "a b": "x" } }, opts)).field,
    ).to.equal("labels.a b");
    expect(
      parsePatch("environments", { labels: { "fizz.dev/team": "x" } }, opts).labels,
    ).to.deep.equal({ "fizz.dev/team": "x" });
  });
});

describe("config", () => {
  it("has the documented defaults", () => {
    const c = loadConfig({ FIZZ_ADMIN_TOKEN: "a-long-enough-admin-token" });
    expect(c).to.include({
      host: "127.0.0.1",
      port: 8081,
      codeMaxBytes: 8 * 1024 * 1024,
      backend: "process",
      redisPrefix: "fizz:v1:",
      syncTimeoutMs: 2000,
    });
  });

  it("names the variable that is wrong", () => {
    expect(() => loadConfig({ FIZZ_REGISTRY_PORT: "x" })).to.throw(/FIZZ_REGISTRY_PORT/);
    expect(() => loadConfig({ FIZZ_BACKEND: "docker" })).to.throw(/FIZZ_BACKEND/);
    expect(() => loadConfig({ FIZZ_CODE_MAX_BYTES: "0" })).to.throw(/FIZZ_CODE_MAX_BYTES/);
    expect(() => loadConfig({ FIZZ_SUBJECT_PREFIX: "a..b" })).to.throw(/FIZZ_SUBJECT_PREFIX/);
    expect(() => loadConfig({ FIZZ_SYNC_TIMEOUT_MS: "0" })).to.throw(/FIZZ_SYNC_TIMEOUT_MS/);
  });
});
