import { createHash } from "node:crypto";
import { expect } from "chai";
import { API_VERSION } from "@fizz/events";
import { openBlobs, registryEnv, startRegistry, startStack, type Stack } from "./helpers";

describe("registry migrating Redis-era code to the Object Store", () => {
  let stack: Stack;

  before(async () => {
    stack = await startStack();
  });
  after(async () => {
    await stack?.cleanup();
  });

  /** A function as a registry before the Object Store wrote it: object, indexes, code blob. */
  async function writeOldFunction(name: string, code: string): Promise<string> {
    const hex = createHash("sha256").update(code).digest("hex");
    const at = new Date().toISOString();
    const meta = (n: string) => ({
      namespace: "default",
      name: n,
      uid: `uid-${n}`,
      revision: 1,
      labels: {},
      createdAt: at,
      updatedAt: at,
    });
    const env = {
      apiVersion: API_VERSION,
      kind: "Environment",
      metadata: meta("py"),
      spec: { image: "fizz/env-python", poolSize: 3 },
    };
    const fn = {
      apiVersion: API_VERSION,
      kind: "Function",
      metadata: meta(name),
      spec: {
        environment: "py",
        code: { filename: "old.py", digest: `sha256:${hex}`, size: Buffer.byteLength(code) },
        minInstances: 0,
        maxInstances: 10,
        timeoutSeconds: 60,
        idleTimeoutSeconds: 120,
      },
    };
    const c = stack.client;
    await c.set("fizz:v1:obj:environments:default:py", JSON.stringify(env));
    await c.sadd("fizz:v1:idx:environments:default", "py");
    await c.sadd("fizz:v1:idx:environments", "default/py");
    await c.set(`fizz:v1:obj:functions:default:${name}`, JSON.stringify(fn));
    await c.sadd("fizz:v1:idx:functions:default", name);
    await c.sadd("fizz:v1:idx:functions", `default/${name}`);
    await c.set(`fizz:v1:code:${hex}`, code);
    return hex;
  }

  it("copies old code blobs at start, keeps serving them, and skips corrupt ones", async () => {
    const code = "def main():\n    return 'from redis'\n";
    const hex = await writeOldFunction("legacy", code);
    // A blob whose bytes do not match its name is not copied.
    const fake = createHash("sha256").update("something else").digest("hex");
    await stack.client.set(`fizz:v1:code:${fake}`, "tampered bytes");

    const blobs = await openBlobs(stack);
    const reg = await startRegistry(registryEnv(stack));
    try {
      expect(await blobs.store.has(`sha256:${hex}`)).to.equal(true);
      expect(await blobs.store.has(`sha256:${fake}`)).to.equal(false);
      const got = await reg.api.ns().code("legacy");
      expect(got.status).to.equal(200);
      expect(got.bytes.toString()).to.equal(code);
      // Left in Redis on purpose (rolling upgrades, rollback).
      expect(await stack.client.exists(`fizz:v1:code:${hex}`)).to.equal(1);
      // The function still updates normally.
      const patched = await reg.api
        .ns()
        .patch("functions", "legacy", { spec: { maxInstances: 3 } });
      expect(patched.status).to.equal(200);
    } finally {
      await reg.svc.stop();
    }
    // A second start finds everything copied and copies nothing again.
    const again = await startRegistry(registryEnv(stack));
    try {
      expect((await again.api.ns().code("legacy")).bytes.toString()).to.equal(code);
    } finally {
      await again.svc.stop();
      await blobs.close();
    }
  });
});
