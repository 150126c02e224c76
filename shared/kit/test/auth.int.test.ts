import { expect } from "chai";
import { pino, type Logger } from "pino";
import {
  connectNats,
  connectRedis,
  loadCommon,
  natsConnected,
  redactUrl,
  redisReady,
  type NatsConnection,
  type Redis,
} from "@fizz/kit";
import { startNats, startRedis, type TestServer } from "@fizz/testkit";

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** A logger that keeps every line, to check what was (and was not) said. */
function memoryLogger(): { logger: Logger; lines: string[] } {
  const lines: string[] = [];
  const logger = pino({ level: "debug" }, { write: (l: string) => void lines.push(l) });
  return { logger, lines };
}

describe("credentials for NATS and Redis (shared/kit)", function () {
  this.timeout(30_000);
  const password = "s3cret-Password_only-the-registry-knows";
  let nats: TestServer;
  let redis: TestServer;
  const closers: Array<() => Promise<unknown> | void> = [];

  before(async () => {
    [nats, redis] = await Promise.all([
      startNats({ users: [{ user: "registry", password }] }),
      startRedis({ users: [{ user: "registry", password }] }),
    ]);
  });
  after(async () => {
    for (const c of closers) await c();
    await Promise.all([nats?.cleanup(), redis?.cleanup()]);
  });

  const env = (over: Record<string, string>) =>
    loadCommon({ FIZZ_NATS_URL: nats.url, FIZZ_REDIS_URL: redis.url, ...over });

  it("connects with FIZZ_NATS_USER/PASSWORD and FIZZ_REDIS_USER/PASSWORD and logs no password", async () => {
    const { logger, lines } = memoryLogger();
    const c = env({
      FIZZ_NATS_USER: "registry",
      FIZZ_NATS_PASSWORD: password,
      FIZZ_REDIS_USER: "registry",
      FIZZ_REDIS_PASSWORD: password,
    });
    const nc = await connectNats({ url: c.natsUrl, name: "t", logger });
    closers.push(() => nc.close());
    const r = connectRedis({ url: c.redisUrl, name: "t", logger });
    closers.push(() => r.disconnect());
    for (let i = 0; i < 50 && !redisReady(r); i++) await sleep(100);
    expect(natsConnected(nc)).to.equal(true);
    expect(redisReady(r)).to.equal(true);
    expect(await r.set("fizz:v1:probe", "1")).to.equal("OK");
    expect(lines.join("\n")).to.not.include(password);
  });

  it("keeps retrying a refused NATS password, says so without the password, and is not ready", async () => {
    const { logger, lines } = memoryLogger();
    const c = env({ FIZZ_NATS_USER: "registry", FIZZ_NATS_PASSWORD: "wrong-" + password });
    const abort = new AbortController();
    let nc: NatsConnection | undefined;
    const pending = connectNats({
      url: c.natsUrl,
      name: "t",
      logger,
      signal: abort.signal,
    }).then(
      (x) => (nc = x),
      () => undefined,
    );
    await sleep(1500);
    abort.abort();
    await pending;
    expect(nc).to.equal(undefined);
    const refused = lines.filter((l) => l.includes("NATS refused our credentials"));
    expect(refused.length).to.be.greaterThan(1);
    expect(lines.join("\n")).to.not.include(password);
    expect(refused[0]).to.include('"user":"registry"');
  });

  it("keeps retrying a refused Redis password, says so without the password, and is not ready", async () => {
    const { logger, lines } = memoryLogger();
    const c = env({ FIZZ_REDIS_USER: "registry", FIZZ_REDIS_PASSWORD: "wrong-" + password });
    const r: Redis = connectRedis({ url: c.redisUrl, name: "t", logger });
    closers.push(() => r.disconnect());
    await sleep(1500);
    expect(redisReady(r)).to.equal(false);
    expect(lines.some((l) => l.includes("Redis refused our credentials"))).to.equal(true);
    expect(lines.join("\n")).to.not.include(password);
  });

  it("refuses half a credential pair at start, naming the missing variable", () => {
    expect(() => env({ FIZZ_NATS_USER: "registry" })).to.throw(/FIZZ_NATS_PASSWORD/);
    expect(() => env({ FIZZ_NATS_PASSWORD: "x" })).to.throw(/FIZZ_NATS_USER/);
    expect(() => env({ FIZZ_REDIS_USER: "registry" })).to.throw(/FIZZ_REDIS_PASSWORD/);
  });

  it("redacts credentials from any URL it logs", () => {
    expect(redactUrl("nats://app:pw@127.0.0.1:4222")).to.equal("nats://127.0.0.1:4222");
    expect(redactUrl("redis://registry:pw@h:6379")).to.not.include("pw");
    expect(redactUrl("nats://127.0.0.1:4222")).to.equal("nats://127.0.0.1:4222");
  });
});
