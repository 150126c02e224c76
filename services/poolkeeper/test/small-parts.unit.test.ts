import { FizzError } from "@fizz/events";
import { expect } from "chai";
import { DEFAULT_RUNTIMES_DIR, loadConfig } from "../src/config";
import { LineSplitter, MAX_LINE } from "../src/lines";

describe("loadConfig", () => {
  it("applies the defaults and keeps FIZZ_* variables out of the instances' environment", () => {
    const c = loadConfig({ PATH: "/bin", FIZZ_REDIS_URL: "redis://127.0.0.1:7000" }, "/srv/app");
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
    expect(c.instanceEnv).to.deep.equal({ PATH: "/bin" });
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
