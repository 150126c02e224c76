import { FizzError } from "@fizz/events";
import { expect } from "chai";
import { DEFAULT_RUNTIMES_DIR, loadConfig } from "../src/config";
import { LineSplitter, MAX_LINE } from "../src/lines";

describe("loadConfig", () => {
  const notRoot = { isRoot: false, exists: () => true };

  it("applies the defaults and gives instances none of the poolkeeper's environment", () => {
    const c = loadConfig(
      {
        PATH: "/root/.pyenv/shims:/bin",
        SECRET: "x",
        FIZZ_REDIS_URL: "redis://:pw@127.0.0.1:7000",
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
      redisPrefix: "fizz:v1:",
    });
    expect(DEFAULT_RUNTIMES_DIR).to.match(/\/runtimes$/);
    expect(c.instanceEnv).to.deep.equal({ PATH: "/usr/local/bin:/usr/bin:/bin", LANG: "C.UTF-8" });
    expect(c.isolation).to.deep.equal({ uids: undefined, setpriv: "/usr/bin/setpriv" });
    expect(c.allowEnvCommand).to.equal(false);
  });

  it("as root, gives instances their own uids and Debian's python, and insists on setpriv", () => {
    const root = { isRoot: true, exists: () => true };
    const c = loadConfig({ FIZZ_INSTANCE_UID_BASE: "300000" }, "/srv/app", root);
    expect(c.isolation.uids).to.deep.equal({ base: 300_000, count: 10_000 });
    expect(c.python).to.equal("/usr/bin/python3");
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

  it("cuts a run without newlines at MAX_LINE so one print cannot grow memory", () => {
    const lines: string[] = [];
    const s = new LineSplitter((l) => lines.push(l));
    s.push("x".repeat(MAX_LINE * 2 + 3));
    expect(lines.map((l) => l.length)).to.deep.equal([MAX_LINE, MAX_LINE]);
    s.end();
    expect(lines.at(-1)).to.equal("xxx");
  });
});
