import http from "node:http";
import type { AddressInfo } from "node:net";
import { expect } from "chai";
import { waitFor } from "@fizz/testkit";
import {
  envBody,
  fnBody,
  READ_TOKEN,
  registryEnv,
  startRegistry,
  startStack,
  type Running,
  type Stack,
} from "./helpers";

/** What the stand-in gateway (a plain HTTP server) received. */
interface Seen {
  method: string;
  url: string;
  headers: http.IncomingHttpHeaders;
  body: string;
}

function listen(handler: http.RequestListener): Promise<{ server: http.Server; url: string }> {
  const server = http.createServer(handler);
  return new Promise((resolve) =>
    server.listen(0, "127.0.0.1", () =>
      resolve({ server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}` }),
    ),
  );
}

describe("registry console invoke (real NATS and Redis; a stand-in gateway over HTTP)", function () {
  this.timeout(60_000);
  let stack: Stack;
  let reg: Running;
  let gateway: { server: http.Server; url: string };
  let elsewhere: { server: http.Server; url: string };
  const seen: Seen[] = [];
  const seenElsewhere: string[] = [];
  const dripClosed: string[] = [];

  before(async () => {
    stack = await startStack();
    gateway = await listen((req, res) => {
      const chunks: Buffer[] = [];
      req.on("data", (c: Buffer) => chunks.push(c));
      req.on("end", () => {
        const body = Buffer.concat(chunks).toString("utf8");
        seen.push({ method: req.method ?? "", url: req.url ?? "", headers: req.headers, body });
        if (req.url?.includes("/binary")) {
          res.writeHead(200, { "content-type": "application/octet-stream" });
          return void res.end(Buffer.from([0xff, 0x00, 0xfe]));
        }
        if (req.url?.includes("/big")) {
          res.writeHead(200, { "content-type": "text/plain" });
          return void res.end("x".repeat(3 * 1024 * 1024));
        }
        if (req.url?.includes("/never")) return; // answers nothing: the invoke timeout ends it
        if (req.url?.includes("/drip")) {
          // Headers at once, then a byte now and then, forever: only the whole-call bound ends it.
          res.writeHead(200, { "content-type": "text/plain" });
          const drip = setInterval(() => res.write("x"), 50);
          res.on("close", () => {
            clearInterval(drip);
            dripClosed.push(req.url ?? "");
          });
          return;
        }
        if (req.url?.includes("/cookie")) {
          res.writeHead(200, {
            "content-type": "text/html",
            "set-cookie": "session=stolen; Path=/",
          });
          return void res.end("<script>parent.pwned = 1</script>");
        }
        res.writeHead(201, {
          "content-type": "text/plain",
          "x-fizz-instance": "inst-1",
          "x-answer": "yes",
          connection: "close",
        });
        res.end(`you said ${body}`);
      });
    });
    elsewhere = await listen((req, res) => {
      seenElsewhere.push(req.url ?? "");
      res.end("elsewhere");
    });
    reg = await startRegistry(
      registryEnv(stack, {
        FIZZ_GATEWAY_URL: gateway.url,
        FIZZ_CONSOLE_INVOKE_TIMEOUT_MS: "1500",
      }),
    );
    for (const ns of ["default", "team-b"]) {
      const api = reg.api.ns(ns);
      expect((await api.create("environments", envBody("python"))).status).to.equal(201);
      expect((await api.create("functions", fnBody("hello", "python"))).status).to.equal(201);
    }
  });

  after(async () => {
    await reg?.svc.stop();
    gateway?.server.close();
    elsewhere?.server.close();
    await stack?.cleanup();
  });

  it("invokes the function through the configured gateway and answers status, headers and body", async () => {
    seen.length = 0;
    const res = await reg.api.call("POST", "/v1/namespaces/default/functions/hello/invoke", {
      method: "POST",
      path: "/sub/path?x=1",
      headers: {
        "content-type": "text/plain",
        "x-custom": "1",
        "X-Fizz-Instance": "forged",
        connection: "upgrade",
      },
      body: "hi",
    });
    expect(res.status, JSON.stringify(res.body)).to.equal(200);
    const answer = res.body as unknown as {
      status: number;
      headers: [string, string][];
      body: string;
      bodyEncoding: string;
    };
    expect(answer.status).to.equal(201);
    expect(answer.body).to.equal("you said hi");
    expect(answer.bodyEncoding).to.equal("utf8");
    const names = answer.headers.map(([k]) => k);
    expect(names).to.include("x-answer");
    expect(names).to.not.include("x-fizz-instance");
    expect(names).to.not.include("connection");
    expect(seen).to.have.length(1);
    expect(seen[0]!.method).to.equal("POST");
    expect(seen[0]!.url).to.equal("/function/hello.default/sub/path?x=1");
    expect(seen[0]!.headers["x-custom"]).to.equal("1");
    expect(seen[0]!.headers["x-fizz-instance"]).to.equal(undefined);
    expect(seen[0]!.headers.authorization).to.equal(undefined);
  });

  it("answers a binary body as base64 and cuts a long answer at 1 MiB", async () => {
    const bin = await reg.api.call("POST", "/v1/namespaces/default/functions/hello/invoke", {
      path: "/binary",
    });
    expect(bin.body).to.deep.include({
      status: 200,
      bodyEncoding: "base64",
      body: "/wD+",
      truncated: false,
    });
    const big = await reg.api.call("POST", "/v1/namespaces/default/functions/hello/invoke", {
      path: "/big",
    });
    const b = big.body as unknown as { body: string; truncated: boolean };
    expect(b.truncated).to.equal(true);
    expect(b.body.length).to.equal(1024 * 1024);
  });

  it("gives up on a function that does not answer in time with 504 TIMEOUT", async () => {
    const res = await reg.api.call("POST", "/v1/namespaces/default/functions/hello/invoke", {
      path: "/never",
    });
    expect(res.status).to.equal(504);
    expect(res.body.error.code).to.equal("TIMEOUT");
  });

  it("ends a call whose answer never finishes at the timeout with 504, and closes the connection", async () => {
    const res = await reg.api.call("POST", "/v1/namespaces/default/functions/hello/invoke", {
      path: "/drip",
    });
    expect(res.status).to.equal(504);
    expect(res.body.error.code).to.equal("TIMEOUT");
    await waitFor(() => dripClosed.length === 1);
  });

  it("hands a function's Set-Cookie and HTML back as JSON data: nothing set or rendered on the registry's origin", async () => {
    const res = await reg.api.call(
      "POST",
      "/v1/namespaces/default/functions/hello/invoke",
      { path: "/cookie" },
      { headers: { origin: reg.api.base } },
    );
    expect(res.status).to.equal(200);
    expect(res.headers.get("set-cookie")).to.equal(null);
    expect(res.headers.get("content-type")).to.match(/^application\/json/);
    const answer = res.body as unknown as { headers: [string, string][]; body: string };
    expect(answer.headers).to.deep.include(["set-cookie", "session=stolen; Path=/"]);
    expect(answer.body).to.equal("<script>parent.pwned = 1</script>");
  });

  it("never calls anywhere but the configured gateway: a URL field or an escaping path is refused", async () => {
    seen.length = 0;
    const attacks: [Record<string, unknown>, string][] = [
      [{ url: `${elsewhere.url}/x` }, "url"],
      [{ gatewayUrl: elsewhere.url }, "gatewayUrl"],
      [{ path: elsewhere.url }, "path"],
      [{ path: `//${new URL(elsewhere.url).host}/x` }, "path"],
      [{ path: "@127.0.0.1/x" }, "path"],
      [{ path: "/../other.default" }, "path"],
      [{ path: "/%2e%2e/other.default" }, "path"],
      [{ path: "/a\\b" }, "path"],
      [{ path: "/caf\u00e9/\u20ac" }, "path"],
      [{ path: "/x%0d%0aHost: evil\r\n" }, "path"],
      [{ headers: { host: new URL(elsewhere.url).host, "bad name": "x" } }, "headers.bad name"],
      [{ method: "CONNECT" }, "method"],
      [{ headers: { "x-split": "a\r\nx-injected: 1" } }, "headers.x-split"],
      [{ headers: { "x-ctl": "a\u0001b" } }, "headers.x-ctl"],
      [{ headers: { "x-wide": "\u20ac" } }, "headers.x-wide"],
    ];
    for (const [body, field] of attacks) {
      const res = await reg.api.call("POST", "/v1/namespaces/default/functions/hello/invoke", body);
      expect(res.status, JSON.stringify(body)).to.equal(400);
      expect(res.body.error.code).to.equal("VALIDATION_FAILED");
      expect(res.body.error.field, JSON.stringify(body)).to.equal(field);
    }
    // A Host header is dropped, not obeyed: the call still goes to the gateway, for this function.
    const hosted = await reg.api.call("POST", "/v1/namespaces/default/functions/hello/invoke", {
      headers: { host: new URL(elsewhere.url).host },
    });
    expect(hosted.status).to.equal(200);
    expect(seen.map((s) => s.url)).to.deep.equal(["/function/hello.default"]);
    expect(seen[0]!.headers.host).to.equal(new URL(gateway.url).host);
    expect(seenElsewhere).to.deep.equal([]);
  });

  it("accepts the console's own POST (Origin = the registry's host) and refuses another Origin even with the token", async () => {
    const invoke = "/v1/namespaces/default/functions/hello/invoke";
    const own = await reg.api.call("POST", invoke, {}, { headers: { origin: reg.api.base } });
    expect(own.status, JSON.stringify(own.body)).to.equal(200);
    for (const origin of [elsewhere.url, "http://evil.example", `https://127.0.0.1.evil.example`]) {
      const res = await reg.api.call("POST", invoke, {}, { headers: { origin } });
      expect(res.status, origin).to.equal(403);
      expect(res.body.error.field).to.equal("Origin");
    }
    // Without the token, the same-origin POST is still refused.
    const anonymous = await reg.api
      .as(null)
      .call("POST", invoke, {}, { headers: { origin: reg.api.base } });
    expect(anonymous.status).to.equal(401);
  });

  it("calls the function of the namespace asked, when two namespaces have one of that name", async () => {
    seen.length = 0;
    const res = await reg.api.call("POST", "/v1/namespaces/team-b/functions/hello/invoke", {});
    expect(res.status).to.equal(200);
    expect(seen.map((x) => x.url)).to.deep.equal(["/function/hello.team-b"]);
    const missing = await reg.api.call("POST", "/v1/namespaces/team-b/functions/nope/invoke", {});
    expect(missing.status).to.equal(404);
  });

  it("refuses the read-only token and no token before calling anything", async () => {
    seen.length = 0;
    const invoke = "/v1/namespaces/default/functions/hello/invoke";
    expect((await reg.api.as(READ_TOKEN).call("POST", invoke, {})).status).to.equal(403);
    expect((await reg.api.as(null).call("POST", invoke, {})).status).to.equal(401);
    expect(seen).to.deep.equal([]);
  });
});
