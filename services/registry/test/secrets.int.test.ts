import { readFile } from "node:fs/promises";
import { Writable } from "node:stream";
import { expect } from "chai";
import { pino } from "pino";
import { Codecs, FizzError, subjects, type RegistryChanged } from "@fizz/events";
import {
  connectNats,
  listen,
  request,
  silentLogger,
  type NatsConnection,
  type Subscription,
} from "@fizz/kit";
import {
  registryEnv,
  secretsKeyFile,
  startRegistry,
  startStack,
  type Running,
  type Stack,
} from "./helpers";

const s = subjects();
const PASSWORD = "hunter2-correct-horse-battery";
const b64 = (t: string) => Buffer.from(t).toString("base64");

describe("registry secrets and configmaps (real NATS and Redis)", () => {
  let stack: Stack;
  let reg: Running;
  let key: Awaited<ReturnType<typeof secretsKeyFile>>;
  let nc: NatsConnection;
  let sub: Subscription;
  const events: RegistryChanged[] = [];
  /** Everything the registry logs, at trace level. */
  const logs: string[] = [];

  before(async () => {
    stack = await startStack();
    key = await secretsKeyFile();
    const sink = new Writable({
      write(chunk: Buffer, _enc, done) {
        logs.push(chunk.toString("utf8"));
        done();
      },
    });
    reg = await startRegistry(
      registryEnv(stack, { FIZZ_SECRETS_KEY_FILE: key.path, FIZZ_LOG_LEVEL: "trace" }),
      { logger: pino({ level: "trace" }, sink) },
    );
    nc = await connectNats({
      url: stack.nats.url,
      name: "test-poolkeeper",
      logger: silentLogger(),
    });
    sub = listen(nc, s.registryChangedAll, Codecs.registryChanged, (e) => void events.push(e), {
      logger: silentLogger(),
    });
  });
  after(async () => {
    sub?.unsubscribe();
    await nc?.close();
    await reg?.svc.stop();
    await stack?.cleanup();
    await key?.cleanup();
  });

  const ns = () => reg.api.ns();
  const read = (secrets: string[], configmaps: string[] = []) =>
    request(
      nc,
      s.registryConfigRead,
      Codecs.registryConfigRead,
      { namespace: "default", secrets, configmaps },
      { sender: "poolkeeper-test", timeoutMs: 5000 },
    );
  /** Every value under the prefix, as one string to search. */
  const everything = async () => {
    const keys = await stack.client.keys("*");
    const values = await Promise.all(
      keys.map(async (k): Promise<string> => {
        const type = await stack.client.type(k);
        if (type === "string") return (await stack.client.getBuffer(k))?.toString("latin1") ?? "";
        // The list index (store-list.ts) is a sorted set.
        if (type === "zset") return JSON.stringify(await stack.client.zrange(k, 0, -1));
        return JSON.stringify(await stack.client.smembers(k));
      }),
    );
    return keys.join("\n") + values.join("\n");
  };

  it("stores a secret's values encrypted and answers only its key names", async () => {
    const created = await ns().create("secrets", {
      name: "db",
      spec: { data: { password: b64(PASSWORD), user: b64("admin") } },
    });
    expect(created.status, JSON.stringify(created.body)).to.equal(201);
    expect(created.body.spec).to.deep.equal({ keys: ["password", "user"] });
    expect((await ns().get("secrets", "db")).body.spec).to.deep.equal({
      keys: ["password", "user"],
    });
    expect(JSON.stringify((await ns().list("secrets")).body)).to.not.include(b64(PASSWORD));
    // Neither Redis nor the change event holds the value, in the clear or base64.
    const stored = await everything();
    expect(stored).to.not.include(PASSWORD);
    expect(stored).to.not.include(b64(PASSWORD));
    const event = events.find((e) => e.kind === "secrets" && e.name === "db");
    expect(event?.object.spec).to.deep.equal({ keys: ["password", "user"] });
    expect(JSON.stringify(events)).to.not.include(b64(PASSWORD));
  });

  it("hands the values to the poolkeeper over registry.config.read", async () => {
    await ns().create("configmaps", {
      name: "settings",
      spec: { data: { "app.conf": "level=debug\n", greeting: "héllo" } },
    });
    const reply = await read(["db"], ["settings"]);
    expect(reply).to.deep.equal({
      secrets: [{ name: "db", data: { password: b64(PASSWORD), user: b64("admin") } }],
      configmaps: [
        { name: "settings", data: { "app.conf": b64("level=debug\n"), greeting: b64("héllo") } },
      ],
    });
  });

  it("names the missing secret or configmap with MISSING_CONFIG", async () => {
    for (const [secrets, configmaps, named] of [
      [["db", "nope"], [], "secret default/nope"],
      [[], ["gone"], "configmap default/gone"],
    ] as const) {
      const err = await read([...secrets], [...configmaps]).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err).to.be.instanceOf(FizzError);
      expect((err as FizzError).code).to.equal("MISSING_CONFIG");
      expect((err as FizzError).message).to.include(named);
    }
  });

  it("replaces values on patch and forgets them on delete", async () => {
    const patched = await ns().patch("secrets", "db", { spec: { data: { token: b64("t0k") } } });
    expect(patched.status, JSON.stringify(patched.body)).to.equal(200);
    expect(patched.body.spec).to.deep.equal({ keys: ["token"] });
    expect((await read(["db"])).secrets).to.deep.equal([
      { name: "db", data: { token: b64("t0k") } },
    ]);
    // A labels-only patch keeps the values.
    await ns().patch("secrets", "db", { labels: { team: "a" } });
    expect((await read(["db"])).secrets[0]?.data).to.deep.equal({ token: b64("t0k") });
    expect((await ns().delete("secrets", "db")).status).to.equal(200);
    expect(await stack.client.keys("*secretdata*")).to.deep.equal([]);
    const err = await read(["db"]).then(
      () => undefined,
      (e: unknown) => e as FizzError,
    );
    expect(err?.code).to.equal("MISSING_CONFIG");
  });

  it("never logs a secret value, not even from a refused or failing write", async () => {
    const value = b64(PASSWORD);
    await ns().create("secrets", { name: "logged", spec: { data: { k: value } } });
    // Refused after parsing (bad key, duplicate name) and on a read of a broken sealed value.
    await ns().create("secrets", { name: "logged", spec: { data: { k: value } } });
    await ns().create("secrets", { name: "bad", spec: { data: { "a/b": value } } });
    await stack.client.set("fizz:v1:secretdata:default:logged", '{"v":1,"iv":"","tag":"","ct":""}');
    const broken = await read(["logged"]).then(
      () => undefined,
      (e: unknown) => e as FizzError,
    );
    expect(broken?.code).to.equal("INTERNAL");
    expect(broken?.message).to.match(/cannot be decrypted/);
    expect(logs.length).to.be.greaterThan(0);
    const all = logs.join("");
    expect(all).to.not.include(PASSWORD);
    expect(all).to.not.include(value);
    // Nor the key.
    expect(all).to.not.include((await readFile(key.path, "utf8")).trim());
    await ns().delete("secrets", "logged");
  });

  it("refuses secret writes without a key file, naming FIZZ_SECRETS_KEY_FILE", async () => {
    const plain = await startRegistry(registryEnv(stack));
    try {
      const res = await plain.api.ns().create("secrets", {
        name: "nokey",
        spec: { data: { k: b64("v") } },
      });
      expect(res.status).to.equal(503);
      expect(res.body.error.code).to.equal("UNAVAILABLE");
      expect(res.body.error.message).to.include("FIZZ_SECRETS_KEY_FILE");
      expect((await plain.api.ns().get("secrets", "nokey")).status).to.equal(404);
      // Configmaps need no key.
      const cm = await plain.api
        .ns()
        .create("configmaps", { name: "c2", spec: { data: { a: "b" } } });
      expect(cm.status).to.equal(201);
    } finally {
      await plain.svc.stop();
    }
  });
});
