import { expect } from "chai";
import { waitFor } from "@fizz/testkit";
import {
  envBody,
  fnBody,
  registryEnv,
  secretsKeyFile,
  startRegistry,
  startStack,
  type Stack,
} from "./helpers";

/**
 * The registry's wiring of persisted known texts (index.ts, known-fingerprint.ts): with a secrets
 * key it persists what its listings learn, under its code's fingerprint; without one (nothing only
 * it holds to seal entries with) or switched off, it persists nothing.
 */
describe("registry: persisting known texts", () => {
  let stack: Stack;
  let key: Awaited<ReturnType<typeof secretsKeyFile>>;
  const knownKeys = () => stack.client.keys("fizz:v1:known:*:functions");

  before(async () => {
    stack = await startStack();
    key = await secretsKeyFile();
  });
  after(async () => {
    await stack?.cleanup();
    await key?.cleanup();
  });

  async function listTwice(env: Record<string, string>, create: boolean): Promise<void> {
    const reg = await startRegistry(registryEnv(stack, env));
    try {
      if (create) {
        expect((await reg.api.ns().create("environments", envBody("py"))).status).to.equal(201);
        for (let i = 0; i < 5; i++)
          expect((await reg.api.ns().create("functions", fnBody(`f-${i}`, "py"))).status).to.equal(
            201,
          );
      }
      const listed = await reg.api.call("GET", "/v1/namespaces/default/functions");
      expect(listed.status).to.equal(200);
    } finally {
      await reg.svc.stop();
    }
  }

  it("persists nothing without a secrets key, or when switched off", async () => {
    await listTwice({}, true);
    await listTwice({ FIZZ_SECRETS_KEY_FILE: key.path, FIZZ_PERSIST_KNOWN_TEXTS: "false" }, false);
    expect(await knownKeys()).to.deep.equal([]);
  });

  it("with a secrets key, persists what a listing learnt, under one fingerprint across restarts", async () => {
    await listTwice({ FIZZ_SECRETS_KEY_FILE: key.path }, false);
    const [hash] = await waitFor(
      async () => {
        const k = await knownKeys();
        return k.length === 1 ? k : undefined;
      },
      { what: "known texts persisted" },
    );
    const snapshot = (await stack.client.get(hash!))!;
    expect(JSON.parse(snapshot.slice(snapshot.indexOf("\n") + 1))).to.have.length(5);
    await listTwice({ FIZZ_SECRETS_KEY_FILE: key.path }, false);
    expect(await knownKeys()).to.deep.equal([hash]);
  });
});
