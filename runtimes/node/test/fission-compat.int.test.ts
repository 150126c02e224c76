// Functions written for Fission's Node environment run unmodified: every signature it accepts,
// context.request as Express's request, and callback answers as Express's res.send sends them.
// A real runtime process, specialized over real HTTP (docs/runtime-contract.md, Node).
import { expect } from "chai";
import { type Runtime, request } from "../../contract/harness.js";
import { ME, push } from "../../contract/runtime-contract.js";
import {
  ASYNC_CALLBACK_REJECTS,
  CALLBACK_ANSWERS,
  FORM_READER,
  REQUEST_ECHO,
  RETURNS_MARKUP,
  SHAPES,
} from "./fission-fixtures.js";
import { nodeRuntime } from "./fixtures.js";

const FORM = { ...ME, "content-type": "application/x-www-form-urlencoded" };

describe("node runtime: Fission's Node functions, unmodified", function () {
  this.timeout(20_000);

  describe("every signature Fission's Node environment accepts", () => {
    for (const shape of SHAPES) {
      it(`answers through ${shape.what}`, async () => {
        const rt = await nodeRuntime.start({ FIZZ_INSTANCE_ID: "inst-1" });
        try {
          const pushed = await push(rt, shape);
          expect(pushed.status, pushed.text).to.equal(200);
          const headers = { ...ME, ...shape.headers };
          const res = await request(rt.url, {
            path: shape.path,
            headers,
            ...(shape.body === undefined ? {} : { method: "POST", body: shape.body }),
          });
          expect(res.status).to.be.within(200, 201);
          expect(res.text).to.equal(shape.answer);
        } finally {
          await rt.kill();
        }
      });
    }
  });

  describe("context.request, as Express's request", () => {
    let rt: Runtime;
    before(async () => {
      rt = await nodeRuntime.start({ FIZZ_INSTANCE_ID: "inst-1" });
      const res = await push(rt, REQUEST_ECHO);
      expect(res.status, res.text).to.equal(200);
    });
    after(() => rt.kill());
    const post = async (
      path: string,
      headers: Record<string, string>,
      body: string | Buffer = "",
    ) => (await request(rt.url, { method: "POST", path, headers, body })).object();

    it("parses a urlencoded form into an object, repeated keys as arrays, while context.body stays the string", async () => {
      const form = "name=Ada+Lovelace&tag=a&tag=b&note=caf%C3%A9";
      const seen = await post("/signup", FORM, form);
      expect(seen.body).to.deep.equal({ name: "Ada Lovelace", tag: ["a", "b"], note: "café" });
      expect(seen.kind).to.equal("object");
      expect(seen.topBody).to.equal(form);
      expect(seen.is).to.deep.include({
        form: "urlencoded",
        json: false,
        none: FORM["content-type"],
      });
    });

    it("keeps __proto__ and constructor in a form as plain keys: nothing reaches Object.prototype", async () => {
      const form = "__proto__=polluted&__proto__[isAdmin]=true&constructor=c&toString=t&x=1";
      const seen = await post("/", FORM, form);
      expect(seen.prototype).to.equal("none");
      expect(seen.keys).to.have.members([
        "__proto__",
        "__proto__[isAdmin]",
        "constructor",
        "toString",
        "x",
      ]);
      expect(seen.body).to.deep.include({ constructor: "c", toString: "t", x: "1" });
      expect(seen.pollutedObjects).to.deep.equal([]);
      const next = await post("/", ME);
      expect(next.pollutedObjects).to.deep.equal([]);
    });

    it("parses a JSON body, the same value as context.body, and reads headers in any case", async () => {
      const headers = {
        ...ME,
        "content-type": "application/json",
        referer: "https://shop.example/cart",
      };
      const seen = await post("/orders?id=7", headers, JSON.stringify({ items: [1, 2] }));
      expect(seen.body).to.deep.equal({ items: [1, 2] });
      expect(seen.topBody).to.deep.equal({ items: [1, 2] });
      expect(seen.serializedBody).to.deep.equal({ items: [1, 2] });
      expect(seen).to.deep.include({
        contentType: "application/json",
        contentTypeByHeader: "application/json",
        referrer: "https://shop.example/cart",
        sameHeaders: true,
      });
      expect(seen.is).to.deep.equal({
        none: "application/json",
        json: "json",
        form: false,
        text: false,
        list: false,
        png: false,
      });
    });

    it("gives a text body as a string and any other body as a Buffer", async () => {
      const text = await post("/", { ...ME, "content-type": "text/plain; charset=utf-8" }, "héllo");
      expect(text).to.deep.include({ body: "héllo", kind: "string" });
      expect(text.is).to.deep.include({ text: "text/plain", json: false });
      const suffixed = await post("/", { ...ME, "content-type": "application/ld+json" }, "{}");
      expect(suffixed.is).to.deep.include({ list: "application/ld+json" });
      const binary = await post(
        "/",
        { ...ME, "content-type": "image/png" },
        Buffer.from([137, 80]),
      );
      expect(binary).to.deep.include({ body: "8950", kind: "buffer" });
      expect(binary.is).to.deep.include({ png: "image/png" });
    });

    it("gives the method, URL, path, query and route parameters", async () => {
      const path = "/users/42/orders?status=open&tag=a&tag=b";
      const headers = { ...ME, "X-Fizz-Params-userId": "42" };
      const seen = (await request(rt.url, { path, headers })).object();
      expect(seen).to.deep.include({
        method: "GET",
        url: path,
        originalUrl: path,
        path: "/users/42/orders",
      });
      expect(seen.query).to.deep.equal({ status: "open", tag: ["a", "b"] });
      expect(seen.params).to.deep.equal({ userId: "42" });
      expect(seen.is).to.deep.include({ none: null }); // no body at all
    });

    it("takes host, protocol and client address from the gateway's X-Forwarded-* headers", async () => {
      const headers = {
        ...ME,
        "x-forwarded-host": "shop.example.com:8443",
        "x-forwarded-for": "10.9.9.9, 203.0.113.7", // the first one is whatever the client claimed
        "x-forwarded-proto": "https",
        "x-requested-with": "XMLHttpRequest",
      };
      const seen = (await request(rt.url, { headers })).object();
      expect(seen).to.deep.include({
        hostname: "shop.example.com",
        ip: "203.0.113.7",
        protocol: "https",
        secure: true,
        xhr: true,
      });
      const direct = (await request(rt.url, { headers: ME })).object();
      expect(direct).to.deep.include({
        hostname: "127.0.0.1",
        protocol: "http",
        secure: false,
        xhr: false,
      });
      expect(direct.ip).to.match(/127\.0\.0\.1$/);
    });

    it("lets the function assign request.body, as Express middleware does", async () => {
      const seen = await post("/?set=1", FORM, "a=1");
      expect(seen).to.deep.include({ body: "assigned", topBody: "a=1" });
    });
  });

  describe("request.body of a form, bounded as Express's urlencoded parser", () => {
    let rt: Runtime;
    before(async () => {
      rt = await nodeRuntime.start({ FIZZ_INSTANCE_ID: "inst-1" });
      const res = await push(rt, FORM_READER);
      expect(res.status, res.text).to.equal(200);
    });
    after(() => rt.kill());
    const send = (read: string, body: string) =>
      request(rt.url, { method: "POST", path: `/?read=${read}`, headers: FORM, body });
    const pairs = (n: number) => Array.from({ length: n }, (_, i) => `k${i}=v${i}`).join("&");

    it("parses a form of 1000 parameters", async () => {
      const res = await send("parsed", pairs(1000));
      expect(res.status, res.text).to.equal(200);
      expect(res.object()).to.deep.equal({ keys: 1000, last: "v999" });
    });

    it("answers 413 PAYLOAD_TOO_LARGE, not a function error, for 1001 parameters, and keeps serving", async () => {
      const res = await send("parsed", `${pairs(1000)}&x`);
      expect(res.status, res.text).to.equal(413);
      const error = res.error();
      expect(error.code).to.equal("PAYLOAD_TOO_LARGE");
      expect(error.message).to.include("more than 1000 parameters");
      expect(error.message).to.include("context.body holds the raw string");
      const flood = await send("parsed", "a&".repeat(512 * 1024));
      expect(flood.status, flood.text).to.equal(413);
      expect((await send("parsed", "k999=still")).object()).to.deep.include({ last: "still" });
    });

    it("answers 413 for a form over 1 MiB, naming the limit, while context.body of a 2 MiB form stays readable", async () => {
      const big = `k999=${"x".repeat(2 * 1024 * 1024)}&end=yes`;
      const res = await send("parsed", big);
      expect(res.status, res.text).to.equal(413);
      expect(res.error().message)
        .to.include("1048576-byte limit")
        .and.include("FIZZ_FORM_MAX_BYTES");
      const raw = await send("raw", big);
      expect(raw.status, raw.text).to.equal(200);
      expect(raw.object()).to.deep.equal({ length: big.length, tail: "x&end=yes" });
    });

    it("refuses again on every read, so a function that catches the refusal never gets the form", async () => {
      const seen = (await send("caught", `${pairs(1000)}&x`)).object();
      expect(seen.first).to.include("more than 1000 parameters");
      expect(seen.again).to.equal("refused");
    });

    it("answers an error the function throws as FUNCTION_ERROR, even one built from the refusal's class", async () => {
      const res = await send("forged", `${pairs(1000)}&x`);
      expect(res.status).to.equal(500);
      expect(res.error()).to.include({ code: "FUNCTION_ERROR", message: "forged" });
    });

    it("takes the size limit from FIZZ_FORM_MAX_BYTES", async () => {
      const small = await nodeRuntime.start({ FIZZ_FORM_MAX_BYTES: "64" });
      try {
        expect((await push(small, FORM_READER)).status).to.equal(200);
        const parse = (body: string) =>
          request(small.url, { method: "POST", path: "/?read=parsed", headers: FORM, body });
        expect((await parse(`k999=${"v".repeat(59)}`)).object()).to.deep.include({ keys: 1 });
        const over = await parse(`k999=${"v".repeat(60)}`);
        expect(over.status, over.text).to.equal(413);
        expect(over.error().message).to.include("65 bytes is over the 64-byte limit");
      } finally {
        await small.kill();
      }
    });
  });

  describe("callback(status, body, headers), as Express's res.send", () => {
    let rt: Runtime;
    before(async () => {
      rt = await nodeRuntime.start({ FIZZ_INSTANCE_ID: "inst-1" });
      const res = await push(rt, CALLBACK_ANSWERS);
      expect(res.status, res.text).to.equal(200);
    });
    after(() => rt.kill());
    const call = (kind: string) => request(rt.url, { path: `/?kind=${kind}`, headers: ME });

    it("answers a string as UTF-8 HTML unless the function names a type, and declares UTF-8 either way", async () => {
      const html = await call("html");
      expect(html.headers["content-type"]).to.equal("text/html; charset=utf-8");
      expect(html.text).to.equal("<p>héllo</p>");
      expect(html.headers["content-length"]).to.equal(String(Buffer.byteLength("<p>héllo</p>")));
      const typed = await call("typed");
      expect(typed.headers["content-type"]).to.equal("text/plain; charset=utf-8");
      const short = await call("short-type");
      expect(short.headers["content-type"]).to.equal("application/json; charset=utf-8");
      const other = await call("other-charset");
      expect(other.headers["content-type"]).to.equal("text/csv; charset=utf-8");
    });

    it("answers a Buffer as octet-stream unless typed, and an object, array or number as JSON", async () => {
      const buffer = await call("buffer");
      expect(buffer.headers["content-type"]).to.equal("application/octet-stream");
      expect([...buffer.body]).to.deep.equal([0, 1, 254, 255]);
      const gif = await call("typed-buffer");
      expect(gif.headers["content-type"]).to.equal("image/gif");
      expect(gif.text).to.equal("GIF89a");
      for (const [kind, json] of [
        ["object", '{"hello":["world"]}'],
        ["array", '[1,"two"]'],
        ["number", "42"],
      ]) {
        const res = await call(kind!);
        expect(res.headers["content-type"], kind).to.equal("application/json; charset=utf-8");
        expect(res.text, kind).to.equal(json);
      }
    });

    it("answers no body, null, and 204 with an empty body", async () => {
      const created = await call("status-only");
      expect(created.status).to.equal(201);
      expect(created.body.length).to.equal(0);
      expect(created.headers["content-length"]).to.equal("0");
      const empty = await call("null");
      expect(empty.status).to.equal(200);
      expect(empty.body.length).to.equal(0);
      const noContent = await call("no-content");
      expect(noContent.status).to.equal(204);
      expect(noContent.body.length).to.equal(0);
      expect(noContent.headers).to.not.have.property("content-type");
      const redirect = await call("redirect");
      expect(redirect.status).to.equal(303);
      expect(redirect.headers.location).to.equal("/guestbook");
    });

    it("streams a Readable body", async () => {
      const res = await call("stream");
      expect(res.headers["transfer-encoding"]).to.equal("chunked");
      expect(res.headers["content-type"]).to.equal("text/plain; charset=utf-8");
      expect(res.text).to.equal("one two three");
    });

    it("takes the first answer when called twice, and one given later from a timer", async () => {
      const twice = await call("twice");
      expect(twice.status).to.equal(200);
      expect(twice.text).to.equal("first");
      const later = await call("later");
      expect(later.status).to.equal(202);
      expect(later.text).to.equal("later");
    });

    it("answers 500 FUNCTION_ERROR for a throw before answering or a status HTTP cannot send, and keeps serving", async () => {
      const thrown = await call("throw");
      expect(thrown.status).to.equal(500);
      expect(thrown.error()).to.include({
        code: "FUNCTION_ERROR",
        message: "thrown before answering",
      });
      const bad = await call("bad-status");
      expect(bad.status).to.equal(500);
      expect(bad.error().code).to.equal("FUNCTION_ERROR");
      expect((await call("html")).status).to.equal(200);
    });

    it("refuses a header value that would split the response, sending none of it", async () => {
      const res = await call("header-injection");
      expect(res.status).to.equal(500);
      expect(res.error().code).to.equal("FUNCTION_ERROR");
      expect(res.headers).to.not.have.property("set-cookie");
      expect(res.headers).to.not.have.property("x-note");
    });
  });

  describe("where the callback and return forms differ", () => {
    let rt: Runtime | undefined;
    afterEach(() => rt?.kill());

    it("answers 500 FUNCTION_ERROR when an async callback-style function rejects before answering", async () => {
      rt = await nodeRuntime.start();
      expect((await push(rt, ASYNC_CALLBACK_REJECTS)).status).to.equal(200);
      const res = await request(rt.url, { headers: ME });
      expect(res.error()).to.include({
        code: "FUNCTION_ERROR",
        message: "rejected before answering",
      });
    });

    it("answers a returned string as text/plain, so echoed input is never rendered as HTML", async () => {
      rt = await nodeRuntime.start();
      expect((await push(rt, RETURNS_MARKUP)).status).to.equal(200);
      const res = await request(rt.url, { headers: ME });
      expect(res.headers["content-type"]).to.equal("text/plain; charset=utf-8");
      expect(res.text).to.equal("<script>alert(1)</script>");
    });
  });
});
