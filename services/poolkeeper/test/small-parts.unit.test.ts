import { FizzError } from "@fizz/events";
import { expect } from "chai";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { DEFAULT_RUNTIMES_DIR, loadConfig } from "../src/config";
import { UidPool } from "../src/isolation";
import { LineSplitter, MAX_LINE } from "../src/lines";

describe("loadConfig", () => {
  const notRoot = { isRoot: false, exists: () => true };

  it("applies the defaults and gives instances none of the poolkeeper's environment", () => {
    const c = loadConfig(
      {
        PATH: "/root/.pyenv/shims:/bin",
        SECRET: "x",
        FIZZ_REDIS_URL: "redis://:redis-pw@127.0.0.1:7000",
        FIZZ_REDIS_USER: "poolkeeper",
        FIZZ_REDIS_PASSWORD: "redis-pw",
        FIZZ_NATS_USER: "poolkeeper",
        FIZZ_NATS_PASSWORD: "pw",
      },
      "/srv/app",
      notRoot,
    );
    expect(c).to.include({
      backend: "process",
      host: "127.0.0.1",
      port: 0,
      workDir: "/srv/app/.fizz/work",
      runtimesDir: DEFAULT_RUNTIMES_DIR,
      python: "python3",
      specializeTimeoutMs: 10_000,
    });
    // The poolkeeper has no Redis: no URL, no prefix, and a Redis password in its environment
    // (as an old launcher gave it) is not even read.
    expect(c).to.not.have.any.keys("redisUrl", "redisPrefix");
    expect(JSON.stringify(c)).to.not.include("redis-pw");
    // Not read at all: a leftover invalid one cannot stop the poolkeeper from starting.
    expect(() => loadConfig({ FIZZ_REDIS_URL: "not a url" }, "/srv/app", notRoot)).to.not.throw();
    expect(DEFAULT_RUNTIMES_DIR).to.match(/\/runtimes$/);
    expect(c.instanceEnv).to.deep.equal({ PATH: "/usr/local/bin:/usr/bin:/bin", LANG: "C.UTF-8" });
    expect(c.isolation).to.deep.equal({ uids: undefined, setpriv: "/usr/bin/setpriv" });
    expect(c.allowEnvCommand).to.equal(false);
  });

  it("as root, gives instances their own uids and Debian's python, and insists on setpriv", () => {
    const root = { isRoot: true, exists: () => true };
    const c = loadConfig({ FIZZ_INSTANCE_UID_BASE: "300000" }, "/srv/app", root);
    expect(c.isolation.uids).to.deep.equal({
      base: 300_000,
      count: 10_000,
      lockDir: "/run/fizz/instance-uids",
    });
    expect(c.python).to.equal("/usr/bin/python3");
    // The kill pass's own uid is the one just below the range, so no instance or build has it.
    expect(c.isolation.shieldedKill).to.deep.equal({
      python: "/usr/bin/python3",
      script: path.join(c.runtimesDir, "spawner", "fizz_spawner.py"),
      ruid: 299_999,
      lock: "/run/fizz/instance-uids/kill-pass",
    });
    let err: unknown;
    try {
      loadConfig({}, "/srv/app", { isRoot: true, exists: () => false });
    } catch (e) {
      err = e;
    }
    expect((err as FizzError).field).to.equal("FIZZ_SETPRIV");
  });

  it("names the bad variable", () => {
    for (const [name, value] of [
      ["FIZZ_POOLKEEPER_BACKEND", "docker"],
      ["FIZZ_POOLKEEPER_PORT", "70000"],
      ["FIZZ_SPECIALIZE_TIMEOUT_MS", "soon"],
      ["FIZZ_INSTANCE_UID_BASE", "1"], // the kill pass's uid would be root's
    ] as const) {
      let err: unknown;
      try {
        loadConfig({ [name]: value });
      } catch (e) {
        err = e;
      }
      expect(err).to.be.instanceOf(FizzError);
      expect((err as FizzError).field).to.equal(name);
      expect((err as FizzError).code).to.equal("VALIDATION_FAILED");
    }
  });
});

describe("LineSplitter", () => {
  it("joins chunks into lines, drops \\r\\n endings and flushes the last partial line at end", () => {
    const lines: string[] = [];
    const s = new LineSplitter((l) => lines.push(l));
    s.push("hel");
    s.push("lo\r\nwor");
    s.push("ld\n\nlast");
    expect(lines).to.deep.equal(["hello", "world", ""]);
    s.end();
    s.end();
    expect(lines).to.deep.equal(["hello", "world", "", "last"]);
  });

  it("cuts a line longer than MAX_LINE, marks the cut and skips its rest, so one print cannot grow memory", () => {
    const lines: string[] = [];
    const s = new LineSplitter((l) => lines.push(l));
    s.push("x".repeat(MAX_LINE * 2 + 3));
    s.push("yyy\nnext\n");
    expect(lines.map((l) => l.length)).to.deep.equal([MAX_LINE, 4]);
    expect(lines[0]).to.match(/^x+ \[fizz: line cut\]$/);
    expect(lines[1]).to.equal("next");
  });
});

describe("UidPool", () => {
  let dir: string;
  beforeEach(() => (dir = mkdtempSync(path.join(tmpdir(), "fizz-uids-"))));
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it("never hands the same uid to two poolkeepers sharing the host, and reuses a released one", () => {
    const a = new UidPool(200_000, 3, dir);
    const b = new UidPool(200_000, 3, dir);
    expect(a.take()).to.equal(200_000);
    expect(b.take()).to.equal(200_001);
    expect(a.take()).to.equal(200_002);
    let err: unknown;
    try {
      b.take();
    } catch (e) {
      err = e;
    }
    expect((err as FizzError).code).to.equal("NO_CAPACITY");
    a.release(200_000);
    expect(b.take()).to.equal(200_000);
  });

  it("reclaims a uid claimed by a poolkeeper that is gone", () => {
    writeFileSync(path.join(dir, "200000"), "999999999");
    expect(new UidPool(200_000, 2, dir).take()).to.equal(200_000);
  });
});
