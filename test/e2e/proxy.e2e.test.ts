import { expect } from "chai";
import { existsSync, readFileSync } from "node:fs";
import { chmod, mkdir } from "node:fs/promises";
import http from "node:http";
import net from "node:net";
import path from "node:path";
import { startPlatform, type Platform } from "./helpers";
import {
  dumpLogsOnFailure,
  errorCode,
  eventually,
  gatewayPid,
  json,
  fizzOk,
  rssBytes,
  sleep,
  timed,
} from "./probes";

/**
 * Issue 3, the proxy as users see it: bodies stream both ways, the request size limit, hop-by-hop
 * headers, the forwarding headers and request id, and a client that goes away cancelling the
 * upstream request.
 */
describe("the gateway's proxy, end to end", function () {
  this.timeout(60_000);
  const MAX_BODY = 24 * 1024 * 1024;
  let p: Platform;
  let marks: string;

  /**
   * `?sse=1`: an event stream; otherwise plain text. Either way one chunk at once, the next after
   * 1.5 s. `?forever=<token>`: a chunk every 100 ms until the runtime destroys the stream (its
   * client went away), which writes `aborted-<token>` into the marks directory.
   */
  const streamJs = (dir: string) => `
const { Readable } = require("node:stream");
const fs = require("node:fs");
const path = require("node:path");
const MARKS = ${JSON.stringify(dir)};
module.exports = async (ctx) => {
  const q = ctx.query;
  if (q.forever) {
    let n = 0;
    let timer;
    const s = new Readable({
      read() {},
      destroy(err, cb) {
        clearInterval(timer);
        fs.writeFileSync(path.join(MARKS, "aborted-" + q.forever), String(n));
        cb(err);
      },
    });
    timer = setInterval(() => s.push("tick " + n++ + "\\n"), 100);
    s.push("start\\n");
    return { status: 200, headers: { "content-type": "text/plain" }, body: s };
  }
  const sse = q.sse !== undefined;
  const s = new Readable({ read() {} });
  s.push(sse ? "data: first\\n\\n" : "first\\n");
  setTimeout(() => {
    s.push(sse ? "data: second\\n\\n" : "second\\n");
    s.push(null);
  }, 1500);
  const headers = sse ? { "content-type": "text/event-stream", "cache-control": "no-cache" } : {};
  return { status: 200, headers, body: s };
};
`;

  /** Echoes what the function received; `?hop=1` also answers with hop-by-hop headers. */
  const echoJs = `
module.exports = async (ctx) => {
  const headers = ctx.query.hop
    ? { "x-fn": "1", "x-resp-hop": "1", "keep-alive": "timeout=99", "connection": "x-resp-hop", "proxy-fn": "1" }
    : { "x-fn": "1" };
  return {
    status: 200,
    headers,
    body: { method: ctx.method, url: ctx.request.url, headers: ctx.headers, bytes: ctx.request.rawBody.length },
  };
};
`;

  /** Counts the body's bytes (the runtime reads it whole; the gateway must not). */
  const countJs = `module.exports = async (ctx) => ({ bytes: ctx.request.rawBody.length, pid: process.pid });\n`;

  before(async () => {
    p = await startPlatform({ FIZZ_MAX_BODY_BYTES: String(MAX_BODY) });
    marks = path.join(p.workDir, "marks");
    await mkdir(marks, { recursive: true });
    // Instances run as an unprivileged user when the platform runs as root: the test's marks
    // directory is the one place they may write to outside their own work directory.
    await chmod(p.workDir, 0o711);
    await chmod(marks, 0o1777);
    await p.file("stream.js", streamJs(marks));
    await p.file("echo.js", echoJs);
    await p.file("count.js", countJs);
    await fizzOk(p, "env create --name node --image fizz/env-node --poolsize 3");
    await fizzOk(
      p,
      "fn create --name stream --env node --code stream.js --concurrency 1 --max-instances 1 --route /stream",
    );
    await fizzOk(p, "fn create --name echo --env node --code echo.js --route /echo");
    await fizzOk(
      p,
      "fn create --name count --env node --code count.js --max-instances 1 --route /count",
    );
  });
  after(async () => {
    await p?.stop();
  });
  afterEach(dumpLogsOnFailure(() => p));

  type EchoBody = { method: string; url: string; headers: Record<string, string>; bytes: number };

  async function firstChunk(url: string) {
    const started = performance.now();
    const res = await fetch(url);
    const headersAt = performance.now() - started;
    const reader = (res.body as ReadableStream<Uint8Array>).getReader();
    const decoder = new TextDecoder();
    const first = await reader.read();
    const firstAt = performance.now() - started;
    let rest = "";
    for (;;) {
      const c = await reader.read();
      if (c.done) break;
      rest += decoder.decode(c.value, { stream: true });
    }
    const endAt = performance.now() - started;
    return { res, headersAt, firstAt, endAt, first: decoder.decode(first.value), rest };
  }

  it("streams a response: the first chunk arrives before the function has finished", async () => {
    await timed(`${p.gatewayUrl}/stream`); // the cold start is not what this test measures
    const r = await firstChunk(`${p.gatewayUrl}/stream`);
    expect(r.res.status).to.equal(200);
    expect(r.first).to.equal("first\n");
    expect(r.rest).to.equal("second\n");
    expect(r.firstAt, "first chunk long before the stream ends").to.be.below(r.endAt - 1000);
    expect(r.endAt).to.be.at.least(1400);
  });

  it("streams server-sent events with their content type, event by event", async () => {
    const r = await firstChunk(`${p.gatewayUrl}/stream?sse=1`);
    expect(r.res.status).to.equal(200);
    expect(r.res.headers.get("content-type")).to.match(/^text\/event-stream/);
    expect(r.first).to.equal("data: first\n\n");
    expect(r.rest).to.equal("data: second\n\n");
    expect(r.firstAt, "first event long before the stream ends").to.be.below(r.endAt - 1000);
  });

  /** Streams `total` bytes of request body in 64 KiB chunks; Content-Length unless `chunked`. */
  function upload(
    url: string,
    total: number,
    opts: { chunked?: boolean; pauseAt?: number; onPause?: () => Promise<void> } = {},
  ) {
    return new Promise<{ status: number; text: string; sent: number; error?: string }>(
      (resolve) => {
        const headers: Record<string, string> = { "content-type": "application/octet-stream" };
        if (!opts.chunked) headers["content-length"] = String(total);
        const req = http.request(url, { method: "POST", headers, agent: false });
        const chunk = Buffer.alloc(64 * 1024, 0x61);
        let sent = 0;
        let answered = false;
        let settled = false;
        const settle = (v: { status: number; text: string; error?: string }) => {
          if (settled) return;
          settled = true;
          resolve({ ...v, sent });
        };
        req.on("response", (res) => {
          answered = true;
          let text = "";
          res.setEncoding("utf8");
          res.on("data", (d: string) => (text += d));
          res.on("end", () => settle({ status: res.statusCode ?? 0, text }));
          res.on("error", (e) => settle({ status: res.statusCode ?? 0, text, error: e.message }));
        });
        req.on("error", (e) => settle({ status: 0, text: "", error: e.message }));
        let paused = false;
        const write = (): void => {
          while (sent < total && !answered) {
            if (!paused && opts.pauseAt !== undefined && sent >= opts.pauseAt) {
              paused = true;
              void (opts.onPause ?? (() => sleep(1000)))().then(write);
              return;
            }
            const n = Math.min(chunk.length, total - sent);
            sent += n;
            if (!req.write(n === chunk.length ? chunk : chunk.subarray(0, n))) {
              req.once("drain", write);
              return;
            }
          }
          if (!answered) req.end();
        };
        write();
      },
    );
  }

  it("streams a 20 MB upload to the function without buffering it in the gateway", async () => {
    const TOTAL = 20_000_000;
    const HALF = TOTAL / 2;
    const warm = await timed(`${p.gatewayUrl}/count`, { method: "POST", body: "x" });
    expect(warm.status, warm.text || warm.error).to.equal(200);
    const instancePid = json<{ pid: number }>(warm).pid; // count has maxInstances 1
    const gw = gatewayPid(p.gatewayUrl);
    expect(gw, "gateway process found").to.be.a("number");
    const rssBefore = rssBytes(gw as number);
    let rssPeak = rssBefore;
    let readWhilePaused = -1;
    const readBefore = bytesRead(instancePid);
    // The client stops for a second halfway: a streaming gateway has passed the first half on to
    // the instance by then; a buffering one is still waiting for the end of the body.
    const r = await upload(`${p.gatewayUrl}/count`, TOTAL, {
      pauseAt: HALF,
      onPause: async () => {
        for (let i = 0; i < 20; i++) {
          rssPeak = Math.max(rssPeak, rssBytes(gw as number));
          await sleep(50);
        }
        readWhilePaused = bytesRead(instancePid) - readBefore;
      },
    });
    expect(r.status, r.text || r.error).to.equal(200);
    expect(json<{ bytes: number }>(r).bytes).to.equal(TOTAL);
    expect(
      readWhilePaused,
      "bytes the instance read while the client paused halfway",
    ).to.be.at.least(HALF * 0.9);
    // For information only: the gateway's RSS moves with garbage collection far more than with
    // one request's body, so it is no measure of buffering (the check above is).
    console.log(
      `      instance read ${(readWhilePaused / 1e6).toFixed(1)} MB of the first 10 MB while the client paused; ` +
        `gateway RSS ${Math.round(rssBefore / 1e6)} MB, +${((rssPeak - rssBefore) / 1e6).toFixed(1)} MB at that point`,
    );
  });

  it("streams a chunked upload of unknown length", async () => {
    const r = await upload(`${p.gatewayUrl}/count`, 3_000_000, { chunked: true });
    expect(r.status, r.text || r.error).to.equal(200);
    expect(json<{ bytes: number }>(r).bytes).to.equal(3_000_000);
  });

  it("refuses a body whose Content-Length is over the limit with 413 at once", async () => {
    const r = await new Promise<{ status: number; text: string }>((resolve, reject) => {
      const req = http.request(`${p.gatewayUrl}/count`, {
        method: "POST",
        headers: {
          "content-length": String(MAX_BODY + 1),
          "content-type": "application/octet-stream",
        },
        agent: false,
      });
      req.on("error", reject);
      req.on("response", (res) => {
        let text = "";
        res.setEncoding("utf8");
        res.on("data", (d: string) => (text += d));
        res.on("end", () => {
          resolve({ status: res.statusCode ?? 0, text });
          req.destroy();
        });
      });
      req.flushHeaders(); // headers only: the answer must not wait for the body
    });
    expect(r.status).to.equal(413);
    expect(errorCode(r)).to.equal("PAYLOAD_TOO_LARGE");
  });

  it("refuses a chunked body that grows past the limit with 413", async () => {
    // A raw socket: the gateway answers 413 and closes while the client is still sending, so a
    // client library may report the write's EPIPE instead of the answer that did arrive.
    const r = await rawChunkedUpload(`${p.gatewayUrl}/count`, MAX_BODY + 4 * 1024 * 1024);
    expect(r.status, r.error).to.equal(413);
    expect(errorCode(r)).to.equal("PAYLOAD_TOO_LARGE");
    expect(r.sent, "the gateway answered without reading the whole body").to.be.at.most(
      MAX_BODY + 4 * 1024 * 1024,
    );
  });

  it("removes hop-by-hop request headers, and the headers Connection names", async () => {
    // Raw HTTP, so the client library adds and removes nothing.
    const port = Number(new URL(p.gatewayUrl).port);
    const raw = await new Promise<string>((resolve, reject) => {
      const sock = net.connect({ port, host: "127.0.0.1" }, () => {
        sock.write(
          [
            "GET /echo HTTP/1.1",
            "Host: fizz.test",
            "Connection: x-custom, close",
            "X-Custom: 1",
            "Keep-Alive: timeout=5",
            "Proxy-Authorization: Basic Zm9vOmJhcg==",
            "TE: trailers",
            "Upgrade: websocket",
            "X-Kept: yes",
            "",
            "",
          ].join("\r\n"),
        );
      });
      let data = "";
      sock.setEncoding("utf8");
      sock.on("data", (d: string) => (data += d));
      sock.on("end", () => resolve(data));
      sock.on("error", reject);
    });
    const [head = "", body = ""] = raw.split("\r\n\r\n", 2);
    expect(head).to.match(/^HTTP\/1\.1 200/);
    const chunkedBody = /transfer-encoding: chunked/i.test(head)
      ? dechunk(raw.slice(head.length + 4))
      : body;
    const seen = (JSON.parse(chunkedBody) as EchoBody).headers;
    expect(seen).to.have.property("x-kept", "yes");
    for (const h of ["x-custom", "keep-alive", "proxy-authorization", "te", "upgrade"]) {
      expect(seen, `${h} must not reach the function`).to.not.have.property(h);
    }
    expect(seen.connection ?? "", "Connection is the gateway's own").to.not.match(/x-custom/i);
  });

  it("removes hop-by-hop response headers, and the headers Connection names", async () => {
    const res = await new Promise<http.IncomingMessage>((resolve, reject) => {
      http.get(`${p.gatewayUrl}/echo?hop=1`, { agent: false }, resolve).on("error", reject);
    });
    res.resume();
    expect(res.statusCode).to.equal(200);
    expect(res.headers).to.have.property("x-fn", "1");
    expect(res.headers, "named in the function's Connection header").to.not.have.property(
      "x-resp-hop",
    );
    expect(res.headers["keep-alive"] ?? "").to.not.match(/timeout=99/);
    expect(res.headers).to.not.have.property("proxy-fn");
    expect(res.headers.connection ?? "").to.not.match(/x-resp-hop/i);
  });

  it("passes X-Forwarded-For/-Host/-Proto and X-Request-Id to the function and echoes X-Request-Id", async () => {
    const r = await timed(`${p.gatewayUrl}/echo`, { headers: { "x-request-id": "e2e-req-123" } });
    expect(r.status, r.text).to.equal(200);
    const seen = json<EchoBody>(r).headers;
    const host = new URL(p.gatewayUrl).host;
    expect(seen["x-forwarded-for"]).to.equal("127.0.0.1");
    expect(seen["x-forwarded-host"]).to.equal(host);
    expect(seen["x-forwarded-proto"]).to.equal("http");
    expect(seen["x-request-id"]).to.equal("e2e-req-123");
    expect(r.headers.get("x-request-id")).to.equal("e2e-req-123");

    // A client claiming to be a proxy: the chain is extended, but its host and proto are replaced
    // (FIZZ_TRUSTED_PROXIES is empty here), so a function's absolute URLs cannot be poisoned.
    const behind = await timed(`${p.gatewayUrl}/echo`, {
      headers: {
        "x-forwarded-for": "203.0.113.7",
        "x-forwarded-host": "api.example.com",
        "x-forwarded-proto": "https",
      },
    });
    const seen2 = json<EchoBody>(behind).headers;
    expect(seen2["x-forwarded-for"]).to.equal("203.0.113.7, 127.0.0.1");
    expect(seen2["x-forwarded-host"]).to.equal(host);
    expect(seen2["x-forwarded-proto"]).to.equal("http");

    // Without one, the gateway makes one up: the function and the client see the same id.
    const fresh = await timed(`${p.gatewayUrl}/echo`);
    const id = fresh.headers.get("x-request-id");
    expect(id).to.be.a("string").and.to.have.length.above(8);
    expect(json<EchoBody>(fresh).headers["x-request-id"]).to.equal(id);
    // Errors carry it too.
    const missing = await timed(`${p.gatewayUrl}/no-such-route`, {
      headers: { "x-request-id": "e2e-404" },
    });
    expect(missing.status).to.equal(404);
    expect(missing.headers.get("x-request-id")).to.equal("e2e-404");
  });

  it("a client that disconnects cancels the upstream request, and frees the instance's slot", async () => {
    // stream has concurrency 1 and maxInstances 1: if the cancelled call kept its slot, the next
    // request could not be served.
    const token = `t${Date.now()}`;
    const ac = new AbortController();
    const res = await fetch(`${p.gatewayUrl}/stream?forever=${token}`, { signal: ac.signal });
    expect(res.status).to.equal(200);
    const reader = (res.body as ReadableStream<Uint8Array>).getReader();
    const first = await reader.read();
    expect(new TextDecoder().decode(first.value)).to.match(/^start/);
    ac.abort();
    await reader.cancel().catch(() => undefined);
    const mark = path.join(marks, `aborted-${token}`);
    await eventually("the function saw its stream cancelled", () => existsSync(mark), 5000);
    const ticks = Number(readFileSync(mark, "utf8"));
    expect(ticks, "stopped soon after the client left").to.be.below(30);
    const next = await timed(`${p.gatewayUrl}/stream`);
    expect(next.status, next.text || next.error).to.equal(200);
    expect(next.text).to.equal("first\nsecond\n");
  });
});

/** Bytes a process has read so far (sockets included), from /proc/<pid>/io. */
function bytesRead(pid: number): number {
  const m = /rchar: (\d+)/.exec(readFileSync(`/proc/${pid}/io`, "latin1"));
  if (!m?.[1]) throw new Error(`no rchar for pid ${pid}`);
  return Number(m[1]);
}

/** Decodes an HTTP/1.1 chunked body. */
function dechunk(s: string): string {
  let out = "";
  let i = 0;
  for (;;) {
    const eol = s.indexOf("\r\n", i);
    if (eol < 0) break;
    const size = parseInt(s.slice(i, eol), 16);
    if (!size) break;
    out += s.slice(eol + 2, eol + 2 + size);
    i = eol + 2 + size + 2;
  }
  return out;
}

/** Sends a chunked POST over a plain socket, ignoring write errors, and parses what came back. */
function rawChunkedUpload(url: string, total: number) {
  const u = new URL(url);
  return new Promise<{ status: number; text: string; sent: number; error?: string }>((resolve) => {
    const sock = net.connect({ host: u.hostname, port: Number(u.port) });
    const received: Buffer[] = [];
    let sent = 0;
    let writeError: string | undefined;
    const chunk = Buffer.alloc(64 * 1024, 0x61);
    const frame = Buffer.concat([
      Buffer.from(`${chunk.length.toString(16)}\r\n`),
      chunk,
      Buffer.from("\r\n"),
    ]);
    sock.on("data", (d: Buffer) => received.push(d));
    sock.on("error", (e) => (writeError = e.message));
    sock.on("close", () => {
      const raw = Buffer.concat(received).toString("utf8");
      const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(raw)?.[1] ?? 0);
      const head = raw.indexOf("\r\n\r\n");
      let body = head >= 0 ? raw.slice(head + 4) : "";
      if (/transfer-encoding: chunked/i.test(raw.slice(0, head))) {
        body = body
          .replace(/^[0-9a-f]+\r\n/i, "")
          .replace(/\r\n0\r\n\r\n$/, "")
          .replace(/\r\n$/, "");
      }
      resolve({
        status,
        text: body,
        sent,
        ...(status === 0 && writeError ? { error: writeError } : {}),
      });
    });
    sock.on("connect", () => {
      sock.write(
        `POST ${u.pathname} HTTP/1.1\r\nHost: ${u.host}\r\nContent-Type: application/octet-stream\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n`,
      );
      const pump = (): void => {
        while (sent < total && !sock.destroyed && received.length === 0) {
          sent += chunk.length;
          if (!sock.write(frame)) {
            sock.once("drain", pump);
            return;
          }
        }
        if (!sock.destroyed && received.length === 0) sock.end("0\r\n\r\n");
      };
      pump();
    });
  });
}
