// Functions written for Fission's Flask-based Python environment run unmodified: `def main()` is
// called in a Flask request context and answers through Flask's make_response. A real runtime
// process (Debian's python3 with python3-flask), real HTTP.
import { expect } from "chai";
import http from "node:http";
import { packageArchive } from "../../contract/archive.js";
import {
  type Runtime,
  eventually,
  request,
  specializeArchive,
  startRuntime,
} from "../../contract/harness.js";
import { ME, push, tagLines } from "../../contract/runtime-contract.js";
import {
  CONTEXT_HELLO,
  FLASK_HELLO,
  FLASK_KINDS,
  FLASK_PYTHON,
  PLAIN_MAIN,
  SERVER_SCRIPT,
  packageWithOwnFlask,
  requireFlask,
  withoutFlask,
} from "./flask-fixtures.js";

const start = (env: Record<string, string> = {}, command = FLASK_PYTHON) =>
  startRuntime(
    { name: "python", command, script: SERVER_SCRIPT },
    { FIZZ_INSTANCE_ID: "inst-1", ...env },
  );

/** The instance imported Flask in the background (its one log line about it). */
async function preloaded(rt: Runtime): Promise<void> {
  await eventually(() => /flask imported in the background/.test(rt.stderr()), 20_000);
}

const get = (rt: Runtime, path: string, headers: Record<string, string> = {}) =>
  request(rt.url, { path, headers: { ...ME, ...headers } });

describe("python runtime: Fission's Flask-style functions", function () {
  this.timeout(30_000);
  before(requireFlask);

  describe("def main() returning a string", () => {
    let rt: Runtime;
    before(async () => {
      rt = await start();
      expect((await push(rt, FLASK_HELLO)).status).to.equal(200);
    });
    after(() => rt.kill());

    it("answers it as text/html, as Flask does", async () => {
      const res = await get(rt, "/");
      expect(res.status).to.equal(200);
      expect(res.headers["content-type"]).to.equal("text/html; charset=utf-8");
      expect(res.text).to.equal("Hello, world!");
    });
  });

  describe("a function using Flask's request and helpers", () => {
    let rt: Runtime;
    before(async () => {
      rt = await start();
      const res = await push(rt, FLASK_KINDS);
      expect(res.status, res.text).to.equal(200);
    });
    after(() => rt.kill());

    it("reads request.args, with repeated keys through getlist", async () => {
      const res = await get(rt, "/args?name=ada&tag=a&tag=b");
      expect(res.headers["content-type"]).to.equal("application/json");
      expect(res.object()).to.deep.equal({ name: "ada", tags: ["a", "b"] });
    });

    it("reads request.form from a urlencoded POST", async () => {
      const res = await request(rt.url, {
        method: "POST",
        path: "/form",
        headers: { ...ME, "content-type": "application/x-www-form-urlencoded" },
        body: "text=hello+there%21",
      });
      expect(res.text).to.equal("text=hello there!");
    });

    const form = (path: string, body: string) =>
      request(rt.url, {
        method: "POST",
        path,
        headers: { ...ME, "content-type": "application/x-www-form-urlencoded" },
        body,
      });

    it("parses a form of 1000 parameters, and answers 413 past 1000 or past 1 MiB, at once", async () => {
      const thousand = Array.from({ length: 1000 }, (_, i) => `k${i}=v`).join("&");
      expect((await form("/form-size", thousand)).text).to.equal("params=1000");
      // Werkzeug 2.2 spends about a second of CPU per MiB of "a&a&..." and has no limit of its own.
      const many = await form("/form-size", "a&".repeat(1000));
      expect(many.status).to.equal(413);
      const big = await form("/form-size", `text=${"x".repeat(1024 * 1024)}`);
      expect(big.status).to.equal(413);
      // The raw body stays readable, and the instance keeps serving.
      expect((await form("/raw-size", "a&".repeat(400_000))).text).to.equal("bytes=800000");
      expect((await form("/form", "text=still")).text).to.equal("text=still");
    });

    it("refuses a header name ending in a newline (no bare LF inside the response head)", async () => {
      const res = await get(rt, "/bad-header");
      expect(res.status).to.equal(500);
      expect(res.error().code).to.equal("FUNCTION_ERROR");
      expect(res.headers).to.not.have.property("x-evil");
    });

    it("reads request.get_json() from a chunked JSON body", async () => {
      const res = await request(rt.url, {
        method: "POST",
        path: "/json",
        headers: { ...ME, "content-type": "application/json" },
        body: ['{"entry":', ' "hi"}'],
      });
      expect(res.object()).to.deep.equal({ got: { entry: "hi" } });
    });

    it("reads request.headers.get, case-insensitively", async () => {
      expect((await get(rt, "/header", { "x-custom": "value" })).text).to.equal("value");
      expect((await get(rt, "/header")).text).to.equal("absent");
    });

    it("gives method, path, url, cookies and raw data, the client's view behind the gateway", async () => {
      const res = await request(rt.url, {
        method: "PUT",
        path: "/request?x=1",
        headers: {
          ...ME,
          cookie: "flavour=lemon",
          "x-forwarded-host": "guestbook.example",
          "x-forwarded-proto": "https",
          "x-forwarded-for": "203.0.113.9",
        },
        body: "raw",
      });
      expect(res.object()).to.deep.equal({
        method: "PUT",
        path: "/request",
        url: "https://guestbook.example/request?x=1",
        scheme: "https",
        remote: "203.0.113.9",
        cookie: "lemon",
        data: "raw",
      });
    });

    it("answers redirect(url, code=303) with that status and a relative Location", async () => {
      const res = await get(rt, "/redirect");
      expect(res.status).to.equal(303);
      expect(res.headers.location).to.equal("/guestbook");
    });

    it("answers abort(400) with 400", async () => {
      expect((await get(rt, "/abort")).status).to.equal(400);
    });

    it("answers bytes as they are", async () => {
      expect([...(await get(rt, "/bytes")).body]).to.deep.equal([0, 1, 2, 255]);
    });

    it("answers a dict as JSON", async () => {
      const res = await get(rt, "/dict");
      expect(res.headers["content-type"]).to.equal("application/json");
      expect(res.object()).to.deep.equal({ a: null, b: [1, "two"] });
    });

    it("answers tuples: (body, status), (body, status, headers) and (body, headers)", async () => {
      const created = await get(rt, "/status");
      expect([created.status, created.text]).to.deep.equal([201, "created"]);
      const made = await get(rt, "/status-headers");
      expect([made.status, made.text, made.headers["x-made"]]).to.deep.equal([202, "made", "yes"]);
      const only = await get(rt, "/headers-only");
      expect([only.status, only.text, only.headers["x-only"]]).to.deep.equal([200, "ok", "yes"]);
    });

    it("answers a Response with its own status and mimetype", async () => {
      const res = await get(rt, "/response");
      expect(res.status).to.equal(203);
      expect(res.headers["content-type"]).to.equal("text/plain; charset=utf-8");
      expect(res.text).to.equal("plain words");
    });

    it("keeps the headers make_response and after_this_request set", async () => {
      expect((await get(rt, "/cookie")).headers["set-cookie"]).to.deep.equal([
        "flavour=mint; Path=/",
      ]);
      expect((await get(rt, "/after")).headers["x-after"]).to.equal("ran");
    });

    it("has flask.escape, and current_app bound to the instance's one app", async () => {
      expect((await get(rt, "/escape")).text).to.equal("&lt;script&gt;alert(1)&lt;/script&gt;");
      expect((await get(rt, "/app")).text).to.equal(`kinds ${64 * 1024 * 1024}`);
    });

    it("streams a returned generator: the first chunk arrives while the function still runs", async () => {
      const stream = await new Promise<http.IncomingMessage>((resolve, reject) =>
        http
          .get(new URL("/stream?tail=end", rt.url), { headers: ME, agent: false }, resolve)
          .on("error", reject),
      );
      expect(stream.headers["transfer-encoding"]).to.equal("chunked");
      const chunks: string[] = [];
      const ended = new Promise((resolve) => stream.on("end", resolve));
      // Released only once the first chunk is here: a buffered answer would never arrive.
      const first = new Promise<void>((resolve) =>
        stream.on("data", (d: Buffer) => {
          chunks.push(d.toString());
          resolve();
        }),
      );
      await first;
      expect(chunks.join("")).to.equal("first;");
      expect((await get(rt, "/release")).text).to.equal("released");
      await ended;
      expect(chunks.join("")).to.equal("first;second;end");
    });

    it("answers None with what the call printed, as text/plain (the classic example)", async () => {
      const res = await get(rt, "/printed");
      expect(res.headers["content-type"]).to.match(/^text\/plain/);
      expect(res.text).to.equal("printed, returned None\n");
    });

    it("marks what the call printed on stdout with its request id, and answers it without the marker", async () => {
      const res = await get(rt, "/printed", { "x-request-id": "flask-call-1" });
      expect(res.text).to.equal("printed, returned None\n");
      await eventually(() => tagLines(rt.stdout()).some((l) => l.id === "flask-call-1"));
      expect(tagLines(rt.stdout()).filter((l) => l.id === "flask-call-1")).to.deep.equal([
        { id: "flask-call-1", line: "printed, returned None" },
      ]);
    });

    it("answers an exception, or a return Flask cannot answer with, with FUNCTION_ERROR", async () => {
      const thrown = await get(rt, "/throw");
      expect(thrown.status).to.equal(500);
      expect(thrown.error().code).to.equal("FUNCTION_ERROR");
      expect(thrown.error().message).to.equal("ValueError: boom from a flask function");
      const bad = await get(rt, "/unanswerable");
      expect(bad.status).to.equal(500);
      expect(bad.error().code).to.equal("FUNCTION_ERROR");
      expect(bad.error().message).to.match(/int/);
    });
  });

  describe("def main(context) on an interpreter with Flask", () => {
    let rt: Runtime;
    before(async () => {
      rt = await start();
      expect((await push(rt, CONTEXT_HELLO)).status).to.equal(200);
    });
    after(() => rt.kill());

    it("gets the context and answers text/plain, as without Flask", async () => {
      const res = await get(rt, "/?who=ada");
      expect(res.headers["content-type"]).to.match(/^text\/plain/);
      expect(res.text).to.equal("context ada");
    });
  });

  describe("def main() that does not import Flask, on an interpreter that has it", () => {
    let rt: Runtime;
    before(async () => {
      rt = await start();
      await preloaded(rt);
      expect((await push(rt, PLAIN_MAIN)).status).to.equal(200);
    });
    after(() => rt.kill());

    it("is a plain call, as before Flask mode: the string answers as text/plain, not HTML", async () => {
      const res = await get(rt, "/");
      expect(res.headers["content-type"]).to.match(/^text\/plain/);
      expect(res.text).to.equal("<b>plain</b>");
      expect(rt.stderr()).to.not.match(/plain\.py.*Flask/);
    });
  });

  describe("def main() where Flask is not installed", () => {
    let rt: Runtime;
    before(async () => {
      rt = await start({}, withoutFlask());
      expect((await push(rt, PLAIN_MAIN)).status).to.equal(200);
    });
    after(() => rt.kill());

    it("is a plain call, as before: the string answers as text/plain", async () => {
      const res = await get(rt, "/");
      expect(res.headers["content-type"]).to.match(/^text\/plain/);
      expect(res.text).to.equal("<b>plain</b>");
      expect(rt.stderr()).to.include("flask is not installed");
    });
  });

  describe("a package whose main() reaches Flask's request only through a helper module", () => {
    let rt: Runtime;
    before(async () => {
      rt = await start();
      await preloaded(rt);
      const files = {
        "main.py": "import helper\n\ndef main():\n    return helper.greet()\n",
        "helper.py": [
          "from flask import request",
          "",
          "def greet():",
          "    return '<b>' + request.args.get('who', 'world') + '</b>'",
          "",
        ].join("\n"),
      };
      const res = await specializeArchive(rt, await packageArchive(files));
      expect(res.status, res.text).to.equal(200);
    });
    after(() => rt.kill());

    // Only modules new since the load are looked at for Flask (the ~280 preloaded ones cannot be
    // the function's): the helper, imported by main.py while it loaded, is one of them.
    it("runs as a Flask function: the string answers as text/html", async () => {
      const res = await get(rt, "/?who=ada");
      expect(res.headers["content-type"]).to.match(/^text\/html/);
      expect(res.text).to.equal("<b>ada</b>");
    });
  });

  describe("a package with its own copy of Flask, on an instance that preloaded Flask", () => {
    let rt: Runtime;
    before(async () => {
      rt = await start();
      await preloaded(rt);
      const res = await specializeArchive(rt, await packageArchive(packageWithOwnFlask()));
      expect(res.status, res.text).to.equal(200);
    });
    after(() => rt.kill());

    it("runs on the package's copy, with escape there even though that copy dropped it", async () => {
      expect((await get(rt, "/?q=<b>")).text).to.equal("packaged=True &lt;b&gt;");
    });
  });
});
