import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { silentLogger } from "@fizz/kit";
import { KubeConfig } from "@kubernetes/client-node";
import { expect } from "chai";
import type { BackendInstance, OutputStream } from "../src/backend";
import { LogCursor, nanos, splitTimestamp } from "../src/kube-log-cursor";
import { PodLogs, type PodLogState } from "../src/kube-logs";

interface Entry {
  ts: string;
  stream: "stdout" | "stderr";
  text: string;
}

/** 40 lines over three seconds, alternating streams, some sharing one timestamp exactly. */
function script(): Entry[] {
  const out: Entry[] = [];
  for (let i = 0; i < 40; i++) {
    const sec = Math.floor(i / 15);
    const ns = String(Math.floor(i / 3) * 1000).padStart(9, "0");
    out.push({
      ts: `2026-12-05T02:00:0${sec}.${ns}Z`,
      stream: i % 4 === 3 ? "stderr" : "stdout",
      text: `line ${i}`,
    });
  }
  return out;
}

/** Resends what a node would for a resumed read: every line from the start of sinceTime's second. */
function resumedRead(all: Entry[], since: string | undefined): Entry[] {
  const floor = since === undefined ? undefined : nanos(since);
  return all.filter((e) => floor === undefined || (nanos(e.ts) ?? 0n) >= floor);
}

describe("kubernetes log cursor", () => {
  it("splits the API server's timestamp from the line and leaves other lines whole", () => {
    expect(splitTimestamp("2026-12-05T02:00:00.000000001Z hello world")).to.deep.equal({
      ts: "2026-12-05T02:00:00.000000001Z",
      ns: 1_796_436_000_000_000_001n,
      text: "hello world",
    });
    expect(splitTimestamp("hello world")).to.deep.equal({
      ts: "",
      ns: undefined,
      text: "hello world",
    });
  });

  it("asks a resumed read from the last line's second", () => {
    const c = new LogCursor();
    expect(c.sinceTime()).to.equal(undefined);
    c.accept(nanos("2026-12-05T02:00:07.123456789Z"), "x");
    expect(c.sinceTime()).to.equal("2026-12-05T02:00:07Z");
  });

  it("passes every line exactly once whatever line a stream broke after", () => {
    const all = script().filter((e) => e.stream === "stdout");
    for (let cut = 0; cut <= all.length; cut++) {
      const c = new LogCursor();
      const got: string[] = [];
      for (const e of all.slice(0, cut)) {
        const t = c.accept(nanos(e.ts), e.text);
        if (t !== undefined) got.push(t);
      }
      c.resume();
      for (const e of resumedRead(all, c.sinceTime())) {
        const t = c.accept(nanos(e.ts), e.text);
        if (t !== undefined) got.push(t);
      }
      expect(got, `broken after ${cut} lines`).to.deep.equal(all.map((e) => e.text));
    }
  });

  it("starts an adopted pod's read at a time and drops nothing after it", () => {
    const all = script();
    const c = new LogCursor();
    c.startAt(all[20]!.ts);
    expect(c.sinceTime()).to.equal("2026-12-05T02:00:01Z");
    const got = resumedRead(all, c.sinceTime())
      .map((e) => c.accept(nanos(e.ts), e.text))
      .filter((t) => t !== undefined);
    expect(got[0]).to.equal("line 18"); // the three lines sharing line 20's timestamp start at 18
    expect(got.at(-1)).to.equal("line 39");
  });
});

describe("kubernetes pod log follow (against a fake pods/log endpoint)", () => {
  let server: Server;
  let requests: URL[];
  let splitSupported: boolean;
  /** The server cuts a connection after this many lines (0: never), `breaks` times in all. */
  let breakAfter: number;
  let breaks: number;
  const all = script();

  beforeEach(async () => {
    requests = [];
    server = createServer((req, res) => {
      const url = new URL(req.url ?? "/", "http://x");
      requests.push(url);
      const stream = url.searchParams.get("stream");
      if (stream !== null && !splitSupported) {
        res.writeHead(422, { "content-type": "application/json" });
        res.end(
          JSON.stringify({ kind: "Status", message: "stream: Forbidden: may not be specified" }),
        );
        return;
      }
      const lines = resumedRead(all, url.searchParams.get("sinceTime") ?? undefined).filter(
        (e) => stream === null || stream.toLowerCase() === e.stream,
      );
      res.writeHead(200, { "content-type": "text/plain" });
      let sent = 0;
      for (const e of lines) {
        if (breakAfter > 0 && breaks > 0 && sent === breakAfter) {
          breaks--;
          res.flushHeaders();
          // Mid-line, as a dropped connection would leave it.
          res.write(`${e.ts} ${e.text.slice(0, 3)}`, () => res.destroy());
          return;
        }
        res.write(`${e.ts} ${e.text}\n`);
        sent++;
      }
      res.end();
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  });
  afterEach(() => new Promise<void>((r) => server.close(() => r())));

  async function follow(
    state: PodLogState,
    ready?: Promise<unknown>,
    stamps: number[] = [],
  ): Promise<Array<[OutputStream, string]>> {
    const kc = new KubeConfig();
    kc.loadFromOptions({
      clusters: [
        {
          name: "c",
          server: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
          // client-node allows plain HTTP only without TLS verification.
          skipTLSVerify: true,
        },
      ],
      users: [{ name: "u", token: "t" }],
      contexts: [{ name: "x", cluster: "c", user: "u" }],
      currentContext: "x",
    });
    const got: Array<[OutputStream, string]> = [];
    const logs = new PodLogs({
      kubeConfig: kc,
      namespace: "fizz",
      container: "runtime",
      state: () => state,
      onLine: (_i, stream, line, writtenAt) => {
        got.push([stream, line]);
        if (writtenAt !== undefined) stamps.push(writtenAt);
      },
      logger: silentLogger(),
    });
    const instance = { id: "pod-1" } as BackendInstance;
    logs.follow(instance, undefined, ready);
    await logs.drained("pod-1", 60_000);
    return got;
  }

  it("reads stdout and stderr apart and resumes broken streams without repeating or losing a line", async () => {
    splitSupported = true;
    breakAfter = 4;
    breaks = 6;
    const got = await follow("finished");
    const want = (s: string) => all.filter((e) => e.stream === s).map((e) => e.text);
    expect(got.filter(([s]) => s === "stdout").map(([, l]) => l)).to.deep.equal(want("stdout"));
    expect(got.filter(([s]) => s === "stderr").map(([, l]) => l)).to.deep.equal(want("stderr"));
    expect(requests.some((u) => u.searchParams.has("sinceTime"))).to.equal(true);
    expect(requests.every((u) => u.searchParams.get("timestamps") === "true")).to.equal(true);
  });

  it("hands each line on with the time its pod wrote it", async () => {
    splitSupported = true;
    breakAfter = 0;
    const stamps: number[] = [];
    const got = await follow("finished", undefined, stamps);
    expect(got).to.have.length(all.length);
    const want = all.map((e) => Number((nanos(e.ts) ?? 0n) / 1_000_000n));
    expect([...stamps].sort()).to.deep.equal([...want].sort());
  });

  it("reads nothing of an adopted pod before its secrets are known for masking", async () => {
    splitSupported = true;
    breakAfter = 0;
    let release!: () => void;
    const ready = new Promise<void>((r) => (release = r));
    const reading = follow("finished", ready);
    await new Promise((r) => setTimeout(r, 200));
    expect(requests).to.have.length(0);
    release();
    expect(await reading).to.have.length(all.length);
  });

  it("reads both streams as one, tagged stdout, when the API server refuses stream selection", async () => {
    splitSupported = false;
    breakAfter = 0;
    const got = await follow("finished");
    expect(got).to.deep.equal(all.map((e) => ["stdout", e.text]));
    expect(requests.filter((u) => u.searchParams.has("stream"))).to.have.length(1);
  });

  it("stops following a pod that is gone", async () => {
    splitSupported = true;
    breakAfter = 4;
    breaks = 2;
    const got = await follow("gone");
    // One read per stream, each cut after four lines; a gone pod is not read again.
    expect(got).to.have.length(8);
  });

  it("hands a flood's lines on one read chunk per turn of the event loop, so other work runs in between", async () => {
    const flood = createServer((_req, res) => {
      res.writeHead(200, { "content-type": "text/plain" });
      const line = `2026-12-05T02:00:00.000000001Z ${"y".repeat(60)}\n`;
      res.end(line.repeat(40_000)); // ~3.6 MB at once
    });
    await new Promise<void>((r) => flood.listen(0, "127.0.0.1", r));
    try {
      const kc = new KubeConfig();
      kc.loadFromOptions({
        clusters: [
          {
            name: "c",
            server: `http://127.0.0.1:${(flood.address() as AddressInfo).port}`,
            skipTLSVerify: true,
          },
        ],
        users: [{ name: "u", token: "t" }],
        contexts: [{ name: "x", cluster: "c", user: "u" }],
        currentContext: "x",
      });
      let got = 0;
      let atNextTurn: number | undefined;
      const logs = new PodLogs({
        kubeConfig: kc,
        namespace: "fizz",
        container: "runtime",
        state: () => "finished",
        onLine: (_i, stream) => {
          if (stream !== "stdout") return;
          if (got++ === 0) setImmediate(() => (atNextTurn = got));
        },
        logger: silentLogger(),
      });
      logs.follow({ id: "pod-1" } as BackendInstance);
      await logs.drained("pod-1", 60_000);
      expect(got).to.equal(40_000);
      // A chunk is at most 64 KiB: ~700 of these lines; the rest came in later turns.
      expect(atNextTurn).to.be.at.most(1_100);
    } finally {
      await new Promise<void>((r) => flood.close(() => r()));
    }
  });
});
