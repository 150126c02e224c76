// Integration tests of the Ruby runtime (runtimes/ruby/server.rb, run with `ruby` from PATH): the
// shared runtime contract (runtimes/contract) with Ruby's fixtures, then what only Ruby does:
// Fission's Rack request, context and answers, the logger, `exit` in a function, the token in
// child processes, archive attacks through pax and GNU long names, and HTTP framing attacks.
import { existsSync, mkdirSync, mkdtempSync, rmSync, symlinkSync } from "node:fs";
import http from "node:http";
import net from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { gzipSync } from "node:zlib";
import { expect } from "chai";
import { packageArchive } from "../../contract/archive.js";
import {
  type Runtime,
  eventually,
  postJson,
  request,
  specializeArchive,
  sleep,
  specializeBody,
  timedChunks,
} from "../../contract/harness.js";
import {
  ME,
  type Source,
  describeRuntimeContract,
  healthState,
  push,
  tagLines,
} from "../../contract/runtime-contract.js";
import { rubyRuntime } from "./fixtures.js";
import { FISSION_REQUEST, RESPONSES, tarEntry } from "./ruby-fixtures.js";

describeRuntimeContract(rubyRuntime);

/** Sends raw bytes and reads until the runtime closes the connection (or `ms` pass). */
function raw(url: string, bytes: string, ms = 3000): Promise<string> {
  const { port } = new URL(url);
  return new Promise((resolve, reject) => {
    const sock = net.connect(Number(port), "127.0.0.1");
    let out = "";
    const timer = setTimeout(() => sock.destroy(), ms);
    sock.on("data", (d: Buffer) => (out += d.toString("latin1")));
    sock.on("error", reject);
    sock.on("close", () => {
      clearTimeout(timer);
      resolve(out);
    });
    sock.write(bytes);
  });
}

describe("ruby runtime: Ruby only", function () {
  this.timeout(20_000);

  describe("Fission's Rack request (context.request)", () => {
    let rt: Runtime;
    before(async () => {
      rt = await rubyRuntime.start({ FIZZ_INSTANCE_ID: "inst-1" });
      expect((await push(rt, FISSION_REQUEST)).status).to.equal(200);
    });
    after(() => rt.kill());

    it("gives method, path, query, form params, route params, body and HTTP_* headers", async () => {
      const res = await request(rt.url, {
        method: "POST",
        path: "/orders/42?kind=rack&tag=a",
        headers: {
          ...ME,
          "content-type": "application/x-www-form-urlencoded",
          "X-Fizz-Params-id": "42",
          "X-Extra": "value",
        },
        body: "qty=3&note=hi",
      });
      expect(res.status, res.text).to.equal(200);
      const seen = res.object();
      expect(seen).to.include({
        method: "POST",
        path: "/orders/42",
        query_string: "kind=rack&tag=a",
        body: "qty=3&note=hi",
        extra: "value",
        post: true,
      });
      expect(seen.params).to.deep.equal({ kind: "rack", tag: "a", qty: "3", note: "hi", id: "42" });
      expect(seen.headers).to.include({ "X-Extra": "value", "X-Fizz-Params-Id": "42" });
    });

    it("answers 413 to a form of more than 1000 parameters read through request.params, as Fission's Node and Flask do", async () => {
      const form = Array.from({ length: 1001 }, (_, i) => `k${i}=v`).join("&");
      const res = await request(rt.url, {
        method: "POST",
        path: "/?kind=rack",
        headers: { ...ME, "content-type": "application/x-www-form-urlencoded" },
        body: form,
      });
      expect(res.status).to.equal(413);
      expect(res.error().code).to.equal("PAYLOAD_TOO_LARGE");
      const fits = await request(rt.url, {
        method: "POST",
        path: "/?kind=rack",
        headers: { ...ME, "content-type": "application/x-www-form-urlencoded" },
        body: form.slice(0, form.lastIndexOf("&")),
      });
      expect(fits.status).to.equal(200);
    });

    it("drops a header whose name has an underscore, which would pose as another in HTTP_*", async () => {
      const res = await request(rt.url, {
        path: "/?kind=rack",
        headers: { ...ME, X_Extra: "forged", X_Fizz_Params_id: "forged" },
      });
      const seen = res.object();
      expect(seen.extra).to.equal(null);
      expect(seen.params).to.not.have.property("id");
    });

    it("logs through context.logger and context.request.logger to stdout", async () => {
      const res = await request(rt.url, { path: "/?kind=log", headers: ME });
      expect(res.text).to.equal("logged");
      await eventually(() => rt.stdout().includes("INFO -- hello: from context.logger"));
      await eventually(() => rt.stdout().includes("WARN -- hello: from request.logger"));
    });

    it("answers 500 FUNCTION_ERROR naming file and line to exit in a call, and keeps serving", async () => {
      const res = await request(rt.url, {
        path: "/?kind=exit",
        headers: { ...ME, "x-request-id": "call-exit" },
      });
      expect(res.status).to.equal(500);
      expect(res.error().code).to.equal("FUNCTION_ERROR");
      expect(res.error().message).to.match(/^request\.rb:\d+: SystemExit: exit$/);
      // The trace the runtime prints about the call carries the call's request id.
      await eventually(
        () => rt.stderr().includes("(request call-exit)") && rt.stderr().endsWith("\n"),
      );
      const trace = tagLines(rt.stderr()).filter((l) => l.line.includes("SystemExit"));
      expect(trace.length).to.be.greaterThan(0);
      for (const l of trace) expect(l.id).to.equal("call-exit");
      expect((await request(rt.url, { path: "/?kind=rack", headers: ME })).status).to.equal(200);
      expect(await healthState(rt)).to.equal("specialized");
    });

    it("answers 400 INVALID_BODY when context.json meets a body that is not JSON", async () => {
      const res = await request(rt.url, {
        method: "POST",
        path: "/?kind=json",
        headers: { ...ME, "content-type": "application/json" },
        body: "{nope",
      });
      expect(res.status).to.equal(400);
      expect(res.error().code).to.equal("INVALID_BODY");
    });
  });

  describe("answers (String, Rack triple, Rack::Response, streamed body, nil)", () => {
    let rt: Runtime;
    const call = (kind: string) => request(rt.url, { path: `/?kind=${kind}`, headers: ME });
    before(async () => {
      rt = await rubyRuntime.start();
      expect((await push(rt, RESPONSES)).status).to.equal(200);
    });
    after(() => rt.kill());

    it("sends a triple's status and headers, Rack 2's newline-joined values as separate headers", async () => {
      const res = await call("cookies");
      expect(res.status).to.equal(404);
      expect(res.headers["set-cookie"]).to.deep.equal(["a=1", "b=2"]);
      expect(res.headers["content-type"]).to.equal("text/html");
      expect(res.text).to.equal("<p>not here</p>");
    });

    it("types an untyped triple text/plain with nosniff (Fission's Thin sent no type at all)", async () => {
      const res = await call("untyped");
      expect(res.headers["content-type"]).to.equal("text/plain; charset=utf-8");
      expect(res.headers["x-content-type-options"]).to.equal("nosniff");
      expect(res.text).to.equal("<script>alert(1)</script>");
    });

    it("keeps framing its own: a function's Content-Length or Transfer-Encoding is dropped", async () => {
      const res = await call("framing");
      expect(res.status).to.equal(200);
      expect(res.text).to.equal("short");
      expect(res.headers["content-length"]).to.equal("5");
    });

    it("refuses a header value with a line break (response splitting) as FUNCTION_ERROR", async () => {
      const res = await call("splitting");
      expect(res.status).to.equal(500);
      expect(res.error().code).to.equal("FUNCTION_ERROR");
      expect(res.headers).to.not.have.property("x-injected");
    });

    it("takes a Rack::Response itself, a body that is a String, and a status that is one", async () => {
      const res = await call("response");
      expect(res.status).to.equal(201);
      expect(res.headers["x-from"]).to.equal("rack-response");
      expect(res.text).to.equal("made");
      expect((await call("string-body")).text).to.equal("rack 1 style");
      const stringStatus = await call("string-status");
      expect(stringStatus.status).to.equal(202);
      expect(stringStatus.text).to.equal("status as a String");
    });

    it("streams a body that is not an Array, chunk by chunk", async () => {
      const res = await timedChunks(rt.url, "/?kind=stream", ME);
      expect(res.status).to.equal(200);
      expect(res.headers["transfer-encoding"]).to.equal("chunked");
      expect(res.chunks.map((c) => c.data).join("")).to.equal("one\ntwo\nthree\n");
      const first = res.chunks[0];
      const last = res.chunks[res.chunks.length - 1];
      if (!first || !last) throw new Error("no chunks");
      expect(last.at - first.at).to.be.above(150);
    });

    it("cuts a streamed answer short when the body raises half-way, and keeps serving", async () => {
      let failed = false;
      await call("stream-fails").catch(() => (failed = true));
      expect(failed, "the client must see an incomplete answer").to.equal(true);
      await eventually(() => rt.stderr().includes("broke mid-stream"));
      expect((await call("untyped")).status).to.equal(200);
    });

    it("answers nil with 204 and a binary String as application/octet-stream", async () => {
      expect((await call("nil")).status).to.equal(204);
      const bin = await call("binary");
      expect(bin.headers["content-type"]).to.equal("application/octet-stream");
    });
  });

  describe("a queued call whose client gave up", () => {
    let rt: Runtime;
    before(async () => {
      rt = await rubyRuntime.start();
      const counter: Source = {
        filename: "counter.rb",
        source: `$calls = 0\n\ndef handler(context)\n  $calls += 1\n  n = $calls\n  puts "call #{n} started"\n  sleep(context.query['ms'].to_f / 1000)\n  n.to_s\nend\n`,
      };
      expect((await push(rt, counter, { concurrency: 1 })).status).to.equal(200);
    });
    after(() => rt.kill());

    it("is not run once a slot frees, and the slot goes to the next call", async () => {
      const running = request(rt.url, { path: "/?ms=500", headers: ME });
      await eventually(() => rt.stdout().includes("call 1 started"));
      const queued = http.request(new URL("/?ms=0", rt.url), { headers: ME, agent: false });
      queued.on("error", () => undefined);
      queued.end();
      await sleep(150);
      queued.destroy();
      expect((await running).text).to.equal("1");
      // The answer is written before its thread leaves the gate, and the abandoned call still
      // holds the one queue place until then: a call sent in that gap is refused with 429 (the
      // gate's rule for a full queue, retryable), as a gateway would be. Only 429 is retried.
      let next = await request(rt.url, { path: "/?ms=0", headers: ME });
      for (let i = 0; next.status === 429 && i < 50; i++) {
        await sleep(20);
        next = await request(rt.url, { path: "/?ms=0", headers: ME });
      }
      expect(next.status).to.equal(200);
      // "2": the abandoned call never ran (it would have been call 2, and this one 3).
      expect(next.text).to.equal("2");
      expect(rt.stdout()).to.not.include("call 3 started");
    });
  });

  describe("the specialize token", () => {
    const TOKEN = "ruby-token-0123456789abcdef-0123456789";
    let rt: Runtime;
    before(async () => {
      rt = await rubyRuntime.start({ FIZZ_SPECIALIZE_TOKEN: TOKEN });
    });
    after(() => rt.kill());

    it("is in neither ENV nor the environment of a process the function starts", async () => {
      const source = `def handler\n  ENV.to_h.to_s + "\\n" + \`/usr/bin/env\`\nend\n`;
      const res = await postJson(rt.url, "/v2/specialize", specializeBody("env.rb", source), {
        "x-fizz-specialize-token": TOKEN,
      });
      expect(res.status, res.text).to.equal(200);
      const env = await request(rt.url, { headers: ME });
      expect(env.status).to.equal(200);
      expect(env.text).to.include("PATH");
      expect(env.text).to.not.include(TOKEN);
      expect(env.text).to.not.include("FIZZ_SPECIALIZE_TOKEN");
    });
  });

  describe("archives built to get past a tar reader", () => {
    let rt: Runtime;
    // The runtime extracts into <base>/w/fn; an escape would land in w/, in <base> or in /tmp.
    const base = mkdtempSync(path.join(tmpdir(), "fizz-ruby-archive-"));
    const workdir = path.join(base, "w");
    const U = path.basename(base);
    before(async () => {
      mkdirSync(workdir);
      rt = await rubyRuntime.start({ FIZZ_WORKDIR: workdir, FIZZ_MAX_PACKAGE_BYTES: "1000000" });
    });
    after(async () => {
      await rt.kill();
      rmSync(base, { recursive: true, force: true });
    });

    const main = tarEntry("main.rb", "def handler\n  'x'\nend\n");
    const BOMB = 20 * 1024 * 1024; // declared, all zeros: ~20 KB once gzip'd
    const cases: Array<[string, Buffer[], string]> = [
      [
        "a pax path that climbs out",
        [tarEntry("", `../${U}evil\n`, "x", "path"), tarEntry("ok.rb", "x")],
        `entry "../${U}evil": path escapes the archive root`,
      ],
      [
        "a pax path that is absolute",
        [tarEntry("", `/tmp/${U}evil\n`, "x", "path"), tarEntry("ok.rb", "x")],
        `entry "/tmp/${U}evil": an absolute path`,
      ],
      [
        "a GNU long name that climbs out",
        [tarEntry("././@LongLink", `../../${U}evil\0`, "L"), tarEntry("ok.rb", "x")],
        `entry "../../${U}evil": path escapes the archive root`,
      ],
      ["a backslash path", [tarEntry(`..\\${U}evil`, "x")], "a backslash in its path"],
      [
        "a symlink under a pax name",
        [tarEntry("", "inside\n", "x", "path"), tarEntry("l", "", "2")],
        'entry "inside": a symbolic link',
      ],
      ["a sparse file", [tarEntry("sparse", "", "S")], "a sparse file"],
      [
        "a directory replaced by a file",
        [tarEntry("lib/a.rb", "x"), tarEntry("lib", "y")],
        'entry "lib": a file where an earlier entry made a directory',
      ],
      [
        "a file used as a directory",
        [tarEntry("lib", "y"), tarEntry("lib/a.rb", "x")],
        'passes through the file "lib"',
      ],
      ["a GNU volume header", [tarEntry("vol", "", "V")], "a volume header"],
      ["an unknown entry type", [tarEntry("odd", "", "Z")], "unknown entry type"],
      [
        "a pax size that disagrees with the header (data one reader takes for headers)",
        [
          tarEntry("", "0\n", "x", "size"),
          tarEntry("f.rb", tarEntry(`../${U}evil`, "pwned").toString("latin1")),
        ],
        'entry "f.rb": its pax size "0" disagrees with its header\'s 1024',
      ],
      [
        "a directory entry carrying data (a gzip bomb no file cap counts)",
        [tarEntry("d/", "\0".repeat(BOMB), "5")],
        `entry "d/": a directory with ${BOMB} bytes of data`,
      ],
      [
        "the root entry carrying data",
        [tarEntry("./", "\0".repeat(BOMB), "5")],
        `entry "./": a directory with ${BOMB} bytes of data`,
      ],
      [
        "data inflated after the end of the archive",
        [Buffer.alloc(1024), Buffer.alloc(BOMB)],
        "bytes after its end",
      ],
      [
        "a run of global pax headers (read and dropped, not entries)",
        Array.from({ length: 5 }, () => tarEntry("", `${"c".repeat(1000)}\n`, "g", "comment")),
        "more than 4 extended headers before an entry",
      ],
    ];
    for (const [what, entries, message] of cases) {
      it(`refuses ${what} with ARCHIVE_UNSAFE, writes nothing, stays warm`, async () => {
        const archive = gzipSync(Buffer.concat([main, ...entries, Buffer.alloc(1024)]));
        const res = await specializeArchive(rt, archive);
        expect(res.status, res.text).to.equal(400);
        expect(res.error().code).to.equal("ARCHIVE_UNSAFE");
        expect(res.error().message).to.include(message);
        expect(await healthState(rt)).to.equal("warm");
        for (const left of [
          path.join(workdir, "fn"),
          path.join(workdir, `${U}evil`),
          path.join(base, `${U}evil`),
          `/tmp/${U}evil`,
        ]) {
          expect(existsSync(left), left).to.equal(false);
        }
      });
    }

    it("accepts pax and GNU long names that stay inside", async () => {
      const long = `${"d".repeat(120)}/deep.rb`;
      const archive = gzipSync(
        Buffer.concat([
          tarEntry("", `${long}\n`, "x", "path"),
          tarEntry("short", "def deep = 'pax'\n"),
          tarEntry("././@LongLink", `${"e".repeat(110)}.rb\0`, "L"),
          tarEntry("short2", "def handler = deep\n"),
          Buffer.alloc(1024),
        ]),
      );
      const res = await specializeArchive(rt, archive);
      expect(res.status, res.text).to.equal(200);
      expect((await request(rt.url, { headers: ME })).text).to.equal("pax");
    });
  });

  describe("a GNU tar header", () => {
    let rt: Runtime;
    before(async () => (rt = await rubyRuntime.start()));
    after(() => rt.kill());

    it("is not read as having a ustar prefix (GNU keeps atime and ctime there)", async () => {
      const entry = tarEntry("main.rb", "def handler = 'root'\n");
      entry.write("ustar  \0", 257, "latin1");
      entry.write("sub\0", 345, "latin1");
      entry.write("        ", 148, "latin1");
      let sum = 0;
      for (const byte of entry.subarray(0, 512)) sum += byte;
      entry.write(`${sum.toString(8).padStart(6, "0")}\0 `, 148, "latin1");
      const archive = gzipSync(Buffer.concat([entry, Buffer.alloc(1024)]));
      const res = await specializeArchive(rt, archive, { entrypoint: "main.handler" });
      expect(res.status, res.text).to.equal(200);
      expect((await request(rt.url, { headers: ME })).text).to.equal("root");
    });
  });

  describe("a single file written into a FIZZ_WORKDIR holding a link at its name", () => {
    let rt: Runtime;
    const base = mkdtempSync(path.join(tmpdir(), "fizz-ruby-link-"));
    const target = path.join(base, "outside.rb");
    before(async () => {
      mkdirSync(path.join(base, "w"));
      symlinkSync(target, path.join(base, "w", "hello.rb"));
      rt = await rubyRuntime.start({ FIZZ_WORKDIR: path.join(base, "w") });
    });
    after(async () => {
      await rt.kill();
      rmSync(base, { recursive: true, force: true });
    });

    it("is refused (500 FUNCTION_LOAD_FAILED) rather than written through the link", async () => {
      const res = await postJson(
        rt.url,
        "/v2/specialize",
        specializeBody("hello.rb", "def handler = 'x'\n"),
      );
      expect(res.status, res.text).to.equal(500);
      expect(res.error().code).to.equal("FUNCTION_LOAD_FAILED");
      expect(res.error().message).to.include("hello.rb: cannot be written");
      expect(existsSync(target)).to.equal(false);
    });
  });

  describe("SIGTERM drain and connections between requests", () => {
    let rt: Runtime;
    beforeEach(async () => {
      rt = await rubyRuntime.start();
      expect((await push(rt, rubyRuntime.fixtures.hello)).status).to.equal(200);
    });
    afterEach(() => rt.kill());

    /** A raw connection: what it received, and whether it ended cleanly (FIN, not a reset). */
    function connect(): Promise<{ sock: net.Socket; got: () => string; ended: Promise<boolean> }> {
      const { port } = new URL(rt.url);
      const sock = net.connect(Number(port), "127.0.0.1");
      let out = "";
      sock.on("data", (d: Buffer) => (out += d.toString("latin1")));
      const ended = new Promise<boolean>((resolve) => {
        sock.on("end", () => resolve(true));
        sock.on("error", () => resolve(false));
      });
      return new Promise((resolve) =>
        sock.on("connect", () => resolve({ sock, got: () => out, ended })),
      );
    }

    it("finishes a request whose head was half-read when the drain began, then exits 0", async () => {
      const conn = await connect();
      conn.sock.write("GET / HTTP/1.1\r\nHost: x\r\n");
      await sleep(200);
      rt.proc.kill("SIGTERM");
      await sleep(300);
      conn.sock.write("\r\n");
      expect(await conn.ended).to.equal(true);
      expect(conn.got()).to.match(/^HTTP\/1\.1 200 OK\r\n/);
      expect(conn.got()).to.match(/\r\nConnection: close\r\n/i);
      expect(conn.got()).to.include("Hello, world!");
      expect(await rt.exited).to.equal(0);
    });

    it("closes an idle keep-alive connection cleanly at the drain, and one accepted but silent", async () => {
      const idle = await connect();
      idle.sock.write("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
      await eventually(() => idle.got().includes("Hello, world!"));
      const silent = await connect();
      await sleep(100);
      rt.proc.kill("SIGTERM");
      expect(await idle.ended).to.equal(true);
      expect(await silent.ended).to.equal(true);
      expect(silent.got()).to.equal("");
      expect(await rt.exited).to.equal(0);
    });
  });

  describe("a package with vendored gems", () => {
    let rt: Runtime;
    after(() => rt.kill());

    it("puts vendor/bundle gems on $LOAD_PATH and does not load vendor/ files by itself", async () => {
      rt = await rubyRuntime.start();
      const archive = await packageArchive({
        "main.rb": "require 'shout'\n\ndef handler\n  Shout.it('vendored')\nend\n",
        "vendor/bundle/ruby/3.1.0/gems/shout-1.0/lib/shout.rb":
          "module Shout\n  def self.it(s) = s.upcase\nend\n",
        "vendor/bundle/ruby/3.1.0/gems/shout-1.0/test/broken.rb": "raise 'never loaded'\n",
      });
      const res = await specializeArchive(rt, archive);
      expect(res.status, res.text).to.equal(200);
      expect((await request(rt.url, { headers: ME })).text).to.equal("VENDORED");
    });
  });

  describe("HTTP framing", () => {
    let rt: Runtime;
    before(async () => {
      rt = await rubyRuntime.start();
      expect((await push(rt, rubyRuntime.fixtures.hello)).status).to.equal(200);
    });
    after(() => rt.kill());

    it("refuses Content-Length with Transfer-Encoding (request smuggling) with 400 and closes", async () => {
      const out = await raw(
        rt.url,
        "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\n\r\n",
      );
      expect(out).to.match(/^HTTP\/1\.1 400 /);
      expect(out.match(/HTTP\/1\.1/g)).to.have.length(1);
    });

    it("refuses two different Content-Lengths and an unknown transfer coding", async () => {
      const two = await raw(
        rt.url,
        "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
      );
      expect(two).to.match(/^HTTP\/1\.1 400 /);
      const gzip = await raw(
        rt.url,
        "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
      );
      expect(gzip).to.match(/^HTTP\/1\.1 501 /);
    });

    it("answers pipelined requests in order on one connection", async () => {
      const out = await raw(
        rt.url,
        "GET /a HTTP/1.1\r\nHost: x\r\n\r\nPOST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabcGET /c HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
      );
      expect(out.match(/HTTP\/1\.1 200 OK/g)).to.have.length(3);
      expect(out.match(/Hello, world!\n/g)).to.have.length(3);
    });

    it("answers Expect: 100-continue before reading the body", async () => {
      const out = await raw(
        rt.url,
        "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nExpect: 100-continue\r\nConnection: close\r\n\r\nab",
      );
      expect(out).to.match(/^HTTP\/1\.1 100 Continue\r\n\r\nHTTP\/1\.1 200 OK/);
    });
  });
});
