import { existsSync, readFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { EventEmitter } from "node:events";
import type { ServerResponse } from "node:http";
import { PassThrough } from "node:stream";
import { expect } from "chai";
import { CriClock, formatCriEntry, formatNanos, parseCriEntry, timeNanos } from "../src/cri-log";
import { LogQueryError, parseLogQuery, type LogQuery } from "../src/log-query";
import { streamLogs } from "../src/log-reader";
import { ContainerLogWriter, MAX_ENTRY } from "../src/log-writer";
import { writeOrWait } from "../src/kubelet-server";

const entries = (file: string) =>
  readFileSync(file, "utf8")
    .split("\n")
    .filter((l) => l !== "")
    .map((l) => parseCriEntry(l));

describe("procnode CRI log format", () => {
  it("writes and reads back an entry with its stream, partial flag and timestamp", () => {
    const e = {
      ts: "2026-12-05T02:40:01.123456789Z",
      stream: "stderr",
      partial: false,
      content: "boom: x y",
    } as const;
    const line = formatCriEntry(e);
    expect(line).to.equal("2026-12-05T02:40:01.123456789Z stderr F boom: x y\n");
    expect(parseCriEntry(line.slice(0, -1))).to.deep.equal(e);
    expect(parseCriEntry("2026-12-05T02:40:01Z stdout P ")).to.deep.equal({
      ts: "2026-12-05T02:40:01Z",
      stream: "stdout",
      partial: true,
      content: "",
    });
  });

  it("refuses lines that are not CRI entries", () => {
    expect(parseCriEntry("plain text")).to.equal(undefined);
    expect(parseCriEntry("2026-12-05T02:40:01Z stdin F x")).to.equal(undefined);
    expect(parseCriEntry("2026-12-05T02:40:01Z stdout X x")).to.equal(undefined);
  });

  it("keeps nanoseconds through a round trip and orders timestamps as text", () => {
    const ts = "2026-12-05T02:40:01.000000007Z";
    expect(timeNanos(ts) % 1_000_000_000n).to.equal(7n);
    expect(formatNanos(timeNanos(ts))).to.equal(ts);
    expect(timeNanos("2026-12-05T02:40:01Z")).to.equal(timeNanos("2026-12-05T02:40:01.0Z"));
    expect(() => timeNanos("yesterday")).to.throw(/RFC 3339/);
  });

  it("gives every entry of a container a distinct, increasing timestamp", () => {
    const clock = new CriClock();
    const seen = Array.from({ length: 1000 }, () => clock.now());
    expect(new Set(seen).size).to.equal(1000);
    expect([...seen].sort()).to.deep.equal(seen);
    // Formatted as the kubelet's RFC3339NanoFixed (the clock caches the second's prefix).
    for (const t of seen) expect(formatNanos(timeNanos(t))).to.equal(t);
  });
});

describe("procnode container log writer", () => {
  let dir: string;
  beforeEach(async () => (dir = await mkdtemp(path.join(tmpdir(), "procnode-logs-"))));
  afterEach(() => rm(dir, { recursive: true, force: true }));

  it("keeps stdout and stderr apart, line by line, across chunk boundaries", () => {
    const w = new ContainerLogWriter(path.join(dir, "0.log"));
    w.write("stdout", "hel");
    w.write("stderr", "oops\r\n");
    w.write("stdout", "lo\nworld\n");
    w.close();
    expect(entries(path.join(dir, "0.log")).map((e) => [e?.stream, e?.content])).to.deep.equal([
      ["stderr", "oops"],
      ["stdout", "hello"],
      ["stdout", "world"],
    ]);
  });

  it("writes an over-long line as P pieces closed by an F entry, and a last line without newline", () => {
    const w = new ContainerLogWriter(path.join(dir, "0.log"));
    w.write("stdout", `${"a".repeat(MAX_ENTRY + 10)}\nno newline`);
    w.close();
    const got = entries(path.join(dir, "0.log"));
    expect(got.map((e) => [e?.partial, e?.content.length])).to.deep.equal([
      [true, MAX_ENTRY],
      [false, 10],
      [false, 10],
    ]);
    expect(got[2]?.content).to.equal("no newline");
  });

  it("takes a flooding pipe one chunk per turn of the event loop, so the pipe fills and the container waits", async () => {
    const w = new ContainerLogWriter(path.join(dir, "0.log"));
    const pipe = new PassThrough();
    w.attach("stdout", pipe);
    let chunks = 0;
    pipe.on("data", () => chunks++);
    for (let i = 0; i < 5; i++) pipe.write(`${"x\n".repeat(1000)}`);
    await new Promise((r) => process.nextTick(r));
    expect(chunks).to.equal(1);
    expect(pipe.isPaused()).to.equal(true);
    pipe.end();
    await w.done;
    expect(chunks).to.equal(5);
    expect(entries(path.join(dir, "0.log"))).to.have.length(5000);
  });

  it("rotates the file past its cap and keeps one older part", () => {
    const file = path.join(dir, "0.log");
    const w = new ContainerLogWriter(file, { maxFileBytes: 500 });
    for (let i = 0; i < 30; i++) w.write("stdout", `line ${i} ${"x".repeat(40)}\n`);
    w.close();
    expect(readFileSync(file).length).to.be.at.most(500);
    expect(existsSync(`${file}.1`)).to.equal(true);
    expect(entries(file).at(-1)?.content).to.match(/^line 29 /);
  });
});

describe("procnode container log reader", () => {
  let dir: string;
  let file: string;
  beforeEach(async () => {
    dir = await mkdtemp(path.join(tmpdir(), "procnode-read-"));
    file = path.join(dir, "0.log");
  });
  afterEach(() => rm(dir, { recursive: true, force: true }));

  const query = (over: Partial<LogQuery> = {}): LogQuery => ({
    ...parseLogQuery(new URLSearchParams()),
    ...over,
  });
  async function read(q: LogQuery, live = () => false): Promise<string> {
    let out = "";
    await streamLogs(
      { file, live },
      q,
      (t) => {
        out += t;
        return Promise.resolve();
      },
      new AbortController().signal,
    );
    return out;
  }
  function sample(): void {
    const w = new ContainerLogWriter(file);
    w.write("stdout", "one\n");
    w.write("stderr", "two\n");
    w.write("stdout", "three\n");
    w.close();
  }

  it("returns the container's output as it was written, both streams in order", async () => {
    sample();
    expect(await read(query())).to.equal("one\ntwo\nthree\n");
  });

  it("selects one stream, the last N lines, and prefixes timestamps", async () => {
    sample();
    expect(await read(query({ streams: ["stderr"] }))).to.equal("two\n");
    expect(await read(query({ tailLines: 2 }))).to.equal("two\nthree\n");
    expect(await read(query({ tailLines: 0 }))).to.equal("");
    const stamped = await read(query({ timestamps: true, streams: ["stdout"] }));
    expect(stamped).to.match(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z one\n\S+ three\n$/);
  });

  it("leaves out entries before sinceTime and cuts at limitBytes", async () => {
    sample();
    const second = entries(file)[1]!.ts;
    expect(await read(query({ sinceNanos: timeNanos(second) }))).to.equal("two\nthree\n");
    expect(await read(query({ limitBytes: 6 }))).to.equal("one\ntw");
  });

  it("follows a growing log across a rotation and ends once the run is over", async () => {
    const w = new ContainerLogWriter(file, { maxFileBytes: 300 });
    let live = true;
    w.write("stdout", "first\n");
    let out = "";
    const done = streamLogs(
      { file, live: () => live },
      query({ follow: true }),
      (t) => {
        out += t;
        return Promise.resolve();
      },
      new AbortController().signal,
    );
    // Each line is read before the next is written: a rotation never happens twice between two
    // polls (the reader would skip the middle file, as the kubelet's would).
    for (let i = 0; i < 12; i++) {
      w.write(i % 2 ? "stderr" : "stdout", `n${i} ${"y".repeat(30)}\n`);
      while (!out.includes(`n${i} `)) await new Promise((r) => setTimeout(r, 10));
    }
    w.write("stdout", "last words");
    w.close();
    live = false;
    await done;
    const lines = out.split("\n");
    expect(lines[0]).to.equal("first");
    expect(lines.slice(1, 13).map((l) => l.split(" ")[0])).to.deep.equal(
      Array.from({ length: 12 }, (_, i) => `n${i}`),
    );
    expect(lines[13]).to.equal("last words");
    expect(existsSync(`${file}.1`)).to.equal(true);
  });
});

describe("procnode log query", () => {
  it("reads the parameters the API server forwards", () => {
    const q = parseLogQuery(
      new URLSearchParams(
        "follow=true&timestamps=true&tailLines=5&limitBytes=100&sinceTime=2026-12-05T02:00:00Z",
      ),
    );
    expect(q).to.deep.include({ follow: true, timestamps: true, tailLines: 5, limitBytes: 100 });
    expect(q.sinceNanos).to.equal(timeNanos("2026-12-05T02:00:00Z"));
    expect(parseLogQuery(new URLSearchParams("stream=Stderr")).streams).to.deep.equal(["stderr"]);
    expect(parseLogQuery(new URLSearchParams("sinceSeconds=10"), 20_000).sinceNanos).to.equal(
      10_000_000_000n,
    );
  });

  it("refuses bad parameters, naming the field", () => {
    const bad = (s: string, field: string) => {
      const err = (() => {
        try {
          parseLogQuery(new URLSearchParams(s));
        } catch (e) {
          return e;
        }
        return undefined;
      })();
      expect(err, s).to.be.instanceOf(LogQueryError);
      expect((err as LogQueryError).field, s).to.equal(field);
    };
    bad("tailLines=-1", "tailLines");
    bad("limitBytes=0", "limitBytes");
    bad("sinceSeconds=0", "sinceSeconds");
    bad("sinceSeconds=5&sinceTime=2026-12-05T02:00:00Z", "sinceTime");
    bad("sinceTime=noon", "sinceTime");
    bad("stream=Both", "stream");
    bad("stream=Stdout&tailLines=3", "tailLines");
    bad("follow=maybe", "follow");
    bad(`sinceSeconds=${"9".repeat(400)}`, "sinceSeconds");
  });
});

describe("procnode log endpoint writing to a slow client", () => {
  it("leaves no listener behind after waiting for the client thousands of times", async () => {
    const res = Object.assign(new EventEmitter(), { destroyed: false, write: () => false });
    for (let i = 0; i < 2000; i++) {
      const waiting = writeOrWait(res as unknown as ServerResponse, "line\n");
      res.emit("drain");
      await waiting;
    }
    expect(res.listenerCount("close")).to.equal(0);
    expect(res.listenerCount("drain")).to.equal(0);
  });
});
