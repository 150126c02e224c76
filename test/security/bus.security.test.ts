import { expect } from "chai";
import { readdirSync, readFileSync, readlinkSync, statSync } from "node:fs";
import net from "node:net";
import path from "node:path";
import { jetstreamManager } from "@nats-io/jetstream";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { Redis } from "ioredis";
import { subjects } from "@fizz/events";
import { natsConnectionOptions } from "@fizz/kit";
import { startPlatform, type Platform } from "../e2e/helpers";
import { dumpLogsOnFailure, sleep } from "../e2e/probes";

/**
 * The locks on the bus and the store, attacked on the platform as `npm start` runs it: with no
 * credentials, as the application user, and as one service trying another's subjects.
 */
describe("the bus and the store are locked (security)", function () {
  this.timeout(120_000);
  let p: Platform;
  const open: NatsConnection[] = [];
  const s = subjects();
  const enc = (t: string) => new TextEncoder().encode(t);
  afterEach(dumpLogsOnFailure(() => p, 60));

  before(async () => {
    p = await startPlatform();
  });
  after(async () => {
    await Promise.all(open.map((nc) => nc.close().catch(() => undefined)));
    await p?.stop();
  });

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

  /** Whether a publish by `from` on `subject` reaches a subscriber that is allowed to see it. */
  async function delivered(from: string, subject: string, watcher: string): Promise<boolean> {
    const w = await as(watcher);
    let got = false;
    w.nc.subscribe(subject, {
      callback: () => {
        got = true;
      },
    });
    await w.nc.flush();
    const sender = await as(from);
    sender.nc.publish(subject, enc("{}"));
    await sender.nc.flush().catch(() => undefined);
    await sleep(300);
    return got;
  }

  it("refuses NATS and Redis connections without credentials", async () => {
    let natsErr: Error | undefined;
    await connect({ servers: p.natsUrl }).then(
      (nc) => nc.close(),
      (e: Error) => (natsErr = e),
    );
    expect(String(natsErr)).to.match(/Authorization Violation/);

    expect(await redisSays("SET fizz:v1:code:owned x")).to.match(/^-NOAUTH/);
  });

  it("refuses a wrong NATS password and a wrong Redis password", async () => {
    let natsErr: Error | undefined;
    await connect({ servers: p.natsUrl, user: "registry", pass: "guessed" }).then(
      (nc) => nc.close(),
      (e: Error) => (natsErr = e),
    );
    expect(String(natsErr)).to.match(/Authorization Violation/);
    expect(await redisSays("AUTH registry guessed")).to.match(/^-WRONGPASS/);
    expect(await redisSays("AUTH default guessed")).to.match(/^-WRONGPASS/);
  });

  /** One raw command on a fresh connection, as a client with no credentials sends it. */
  function redisSays(command: string): Promise<string> {
    const u = new URL(p.redisUrl);
    return new Promise((resolve, reject) => {
      const sock = net.connect(Number(u.port), u.hostname, () => sock.write(`${command}\r\n`));
      sock.once("data", (d) => {
        sock.destroy();
        resolve(d.toString());
      });
      sock.once("error", reject);
    });
  }

  it("refuses the app user publishing on fizz.v1.poolkeeper.retire and anywhere under fizz.v1", async () => {
    expect(await delivered("app", s.poolkeeperRetire, "poolkeeper")).to.equal(false);
    expect(await delivered("app", s.registryChanged("functions"), "scheduler")).to.equal(false);
    const app = await as("app");
    app.nc.publish("fizz.v1.anything", enc("x"));
    await app.nc.flush().catch(() => undefined);
    await sleep(200);
    expect(app.errors.join(" ")).to.match(/Permissions Violation for Publish/);
  });

  it("refuses the app user listing the registry over NATS", async () => {
    const app = await as("app");
    let err: Error | undefined;
    await app.nc
      .request(s.registryList, enc("{}"), { timeout: 2000 })
      .catch((e: Error) => (err = e));
    expect(err, "registry.list answered the app user").to.not.equal(undefined);
    // The same request as a service is answered: the subject is live, the lock is what refused.
    const sched = await as("scheduler");
    const reply = await sched.nc.request(s.registryList, enc("{}"), { timeout: 5000 });
    expect(reply.data.length).to.be.greaterThan(0);
  });

  it("refuses the app user the JetStream API", async () => {
    const app = await as("app");
    let err: Error | undefined;
    await jetstreamManager(app.nc, { timeout: 2000 })
      .then((jsm) => jsm.streams.list().next())
      .catch((e: Error) => (err = e));
    expect(err, "the app user reached $JS.API").to.not.equal(undefined);
  });

  it("refuses the gateway user every poolkeeper subject; the scheduler's goes through", async () => {
    expect(await delivered("gateway", s.poolkeeperRetire, "poolkeeper")).to.equal(false);
    expect(await delivered("gateway", s.poolkeeperSpecialize, "poolkeeper")).to.equal(false);
    expect(await delivered("scheduler", s.poolkeeperRetire, "poolkeeper")).to.equal(true);
  });

  it("lets only the registry publish registry.changed.*", async () => {
    for (const user of ["gateway", "scheduler", "poolkeeper", "kubewatcher", "app"]) {
      expect(await delivered(user, s.registryChanged("functions"), "scheduler"), user).to.equal(
        false,
      );
    }
    expect(await delivered("registry", s.registryChanged("functions"), "scheduler")).to.equal(true);
  });

  it("lets the app user request a user subject and get the answer", async () => {
    // What a subject trigger does (the gateway user answers); the full path is in bus.e2e.
    const gw = await as("gateway");
    gw.nc.subscribe("orders.quote", {
      callback: (_e, m) => {
        m.respond(enc("42"));
      },
    });
    await gw.nc.flush();
    const app = await as("app");
    const reply = await app.nc.request("orders.quote", enc("?"), { timeout: 5000 });
    expect(new TextDecoder().decode(reply.data)).to.equal("42");
  });

  it("keeps the app user from reading what services are told", async () => {
    const app = await as("app");
    app.nc.subscribe(">");
    app.nc.subscribe("_INBOX_registry.>");
    await app.nc.flush().catch(() => undefined);
    await sleep(200);
    expect(app.errors.join(" ")).to.match(/Permissions Violation for Subscription to ">"/);
    expect(app.errors.join(" ")).to.match(
      /Permissions Violation for Subscription to "_INBOX_registry/,
    );
  });

  it("limits each Redis user to the platform's keys; the poolkeeper has no Redis user at all", async () => {
    const reg = new Redis(p.redisUrlAs("registry"), { maxRetriesPerRequest: 0 });
    // The poolkeeper runs user code (instances, builds): it holds no Redis credentials, and a
    // user of that name does not exist (not even with the registry's password).
    const registryUrl = new URL(p.redisUrlAs("registry"));
    const sock = net.connect(Number(registryUrl.port), registryUrl.hostname);
    const answer = new Promise<string>((resolve, reject) => {
      sock.once("data", (d: Buffer) => resolve(d.toString()));
      sock.once("error", reject);
    });
    sock.write(`AUTH poolkeeper ${decodeURIComponent(registryUrl.password)}\r\n`);
    try {
      expect(await answer).to.match(/^-WRONGPASS/);
      let err: Error | undefined;
      await reg.set("outside:key", "x").catch((e: Error) => (err = e));
      expect(String(err)).to.match(/NOPERM/);
      err = undefined;
      await reg.flushall().catch((e: Error) => (err = e));
      expect(String(err)).to.match(/NOPERM/);
      err = undefined;
      await reg.config("SET", "dir", "/tmp").catch((e: Error) => (err = e));
      expect(String(err)).to.match(/NOPERM/);
    } finally {
      sock.destroy();
      reg.disconnect();
    }
  });

  it("starts the poolkeeper with no Redis URL or credentials in its environment, and no Redis connection", () => {
    const pid = p.pids().poolkeeper;
    expect(pid, "the poolkeeper's pid").to.be.a("number");
    const environ = readFileSync(`/proc/${pid}/environ`, "utf8").split("\0");
    expect(environ.filter((v) => v.startsWith("FIZZ_REDIS_"))).to.deep.equal([]);
    expect(environ.some((v) => v.startsWith("FIZZ_NATS_USER=poolkeeper"))).to.equal(true);
    // Its sockets (inodes under /proc/<pid>/fd) against the TCP table: none to Redis's port.
    const redisPort = Number(new URL(p.redisUrlAs("registry")).port);
    const inodes = new Set<string>();
    for (const fd of readdirSync(`/proc/${pid}/fd`)) {
      const target = (() => {
        try {
          return readlinkSync(`/proc/${pid}/fd/${fd}`);
        } catch {
          return "";
        }
      })();
      const m = /^socket:\[(\d+)\]$/.exec(target);
      if (m?.[1]) inodes.add(m[1]);
    }
    expect(inodes.size, "it has sockets (NATS at least)").to.be.greaterThan(0);
    const toRedis = ["tcp", "tcp6"].flatMap((t) =>
      readFileSync(`/proc/${pid}/net/${t}`, "utf8")
        .split("\n")
        .slice(1)
        .map((l) => l.trim().split(/\s+/))
        .filter((f) => f.length > 9 && inodes.has(f[9]!))
        .filter((f) => parseInt(f[2]!.split(":")[1]!, 16) === redisPort),
    );
    expect(toRedis, "poolkeeper connections to Redis").to.deep.equal([]);
  });

  it("keeps the credentials owner-only on disk and out of every log line", () => {
    const mode = (f: string) => statSync(path.join(p.dataDir, f)).mode & 0o777;
    expect(mode("credentials.json")).to.equal(0o600);
    expect(mode("admin-token")).to.equal(0o600);
    expect(mode("nats/nats-server.conf")).to.equal(0o600);
    expect(mode("redis/users.acl")).to.equal(0o600);
    expect(mode("nats")).to.equal(0o700);
    expect(mode("redis")).to.equal(0o700);
    const secrets = [
      p.adminToken,
      p.readToken,
      ...["registry", "scheduler", "poolkeeper", "gateway", "kubewatcher", "app"].map(
        (u) => new URL(p.natsUrlAs(u)).password,
      ),
      ...["registry", "scheduler"].map((u) => new URL(p.redisUrlAs(u)).password),
    ];
    expect(p.logs.length).to.be.greaterThan(0);
    for (const line of p.logs)
      for (const secret of secrets) expect(line.includes(secret), line).to.equal(false);
  });
});
