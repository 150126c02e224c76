import http from "node:http";
import { mkdir, mkdtemp, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { expect } from "chai";
import { registryEnv, startRegistry, startStack, type Running, type Stack } from "./helpers";

/** A request with the path exactly as written (fetch would resolve `..` before sending). */
function raw(
  port: number,
  method: string,
  urlPath: string,
): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: "127.0.0.1", port, method, path: urlPath }, (res) => {
      let body = "";
      res.on("data", (c: Buffer) => (body += c.toString()));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
    });
    req.on("error", reject);
    req.end();
  });
}

describe("registry serves the web console's files (FIZZ_CONSOLE_DIR)", function () {
  this.timeout(60_000);
  let stack: Stack;
  let reg: Running;
  let work: string;
  const get = (p: string, method = "GET") => raw(reg.svc.port, method, p);

  before(async () => {
    stack = await startStack();
    work = await mkdtemp(path.join(tmpdir(), "fizz-console-"));
    // Under a dot directory (like a checkout in ~/.local/src): only names inside it are checked.
    const dir = path.join(work, ".hidden", "console");
    await mkdir(path.join(dir, "assets"), { recursive: true });
    await writeFile(path.join(dir, "index.html"), "<!doctype html><title>console</title>");
    await writeFile(path.join(dir, "assets", "main-ABCDEFGH.js"), "console.log(1)");
    await writeFile(path.join(dir, ".secret.json"), '{"secret":"dot"}');
    // Next to the console directory: what a traversal would reach.
    await writeFile(path.join(work, "secret.html"), "SECRET-OUTSIDE");
    await writeFile(path.join(work, ".hidden", "secret.html"), "SECRET-OUTSIDE");
    // A link inside the directory to that file: the console must not follow it out.
    await symlink(path.join(work, "secret.html"), path.join(dir, "assets", "leak.html"));
    reg = await startRegistry(registryEnv(stack, { FIZZ_CONSOLE_DIR: dir }));
  });

  after(async () => {
    await reg?.svc.stop();
    await stack?.cleanup();
    await rm(work, { recursive: true, force: true });
  });

  it("serves the page without a token, with a strict CSP and anti-framing headers", async () => {
    const res = await get("/console/");
    expect(res.status).to.equal(200);
    expect(res.body).to.contain("<title>console</title>");
    expect(res.headers["content-type"]).to.equal("text/html; charset=utf-8");
    const csp = res.headers["content-security-policy"] ?? "";
    expect(csp).to.contain("script-src 'self'");
    expect(csp).to.contain("connect-src 'self'");
    expect(csp).to.contain("frame-ancestors 'none'");
    expect(csp).to.not.contain("unsafe-inline");
    expect(res.headers["x-frame-options"]).to.equal("DENY");
    expect(res.headers["x-content-type-options"]).to.equal("nosniff");
    expect(res.headers["referrer-policy"]).to.equal("no-referrer");
    expect(res.headers["cache-control"]).to.equal("no-cache");
  });

  it("redirects /console to /console/ and caches hashed assets for good", async () => {
    const redirect = await get("/console");
    expect(redirect.status).to.equal(301);
    expect(redirect.headers.location).to.equal("/console/");
    const js = await get("/console/assets/main-ABCDEFGH.js");
    expect(js.status).to.equal(200);
    expect(js.headers["content-type"]).to.equal("text/javascript; charset=utf-8");
    expect(js.headers["cache-control"]).to.equal("public, max-age=31536000, immutable");
  });

  for (const attack of [
    "/console/../secret.html",
    "/console/%2e%2e/secret.html",
    "/console/assets/..%2f..%2fsecret.html",
    "/console/..%5csecret.html",
    "/console/.secret.json",
    "/console//secret.html",
    "/console/assets/leak.html",
  ])
    it(`answers 404 to ${attack} and never serves a file outside the console directory`, async () => {
      const res = await get(attack);
      expect(res.status).to.equal(404);
      expect(res.body).to.not.contain("SECRET-OUTSIDE");
      expect(res.body).to.not.contain('"secret"');
    });

  it("refuses writes to the console's path", async () => {
    const res = await get("/console/", "POST");
    expect(res.status).to.equal(405);
  });
});
