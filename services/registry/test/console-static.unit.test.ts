import path from "node:path";
import { expect } from "chai";
import type { Request } from "express";
import { resolveConsolePath, sameOrigin } from "../src/console-http";

const ROOT = path.resolve("/srv/console");

describe("console static files: which URL paths name a file", () => {
  it("serves index.html for the root and files below the console directory", () => {
    expect(resolveConsolePath(ROOT, "/")).to.equal(path.join(ROOT, "index.html"));
    expect(resolveConsolePath(ROOT, "/assets/main-ABCDEFGH.js")).to.equal(
      path.join(ROOT, "assets", "main-ABCDEFGH.js"),
    );
  });

  for (const attack of [
    "/../secret.html",
    "/assets/../../etc/passwd.json",
    "/%2e%2e/secret.html",
    "/%2E%2E%2Fsecret.html",
    "/assets%2f..%2f..%2fsecret.js",
    "/..%5csecret.js",
    "/assets\\..\\..\\secret.js",
    "/.env.json",
    "/assets/.hidden.js",
    "//etc/passwd.json",
    "/index.html%00.js",
    "/%E0%A4%A.js",
  ])
    it(`refuses ${JSON.stringify(attack)} (traversal, dotfile, encoded separator, NUL or bad encoding)`, () => {
      expect(resolveConsolePath(ROOT, attack)).to.equal(undefined);
    });

  it("refuses types the build never makes (so no stray file is served)", () => {
    expect(resolveConsolePath(ROOT, "/notes.txt")).to.equal(undefined);
    expect(resolveConsolePath(ROOT, "/assets")).to.equal(undefined);
  });
});

describe("console same-origin writes: which Origin counts as the registry's own page", () => {
  const req = (headers: Record<string, string>) => ({ headers }) as unknown as Request;
  const own = (origin: string | undefined, host: string | undefined, tokenRequired = true) =>
    sameOrigin(
      req({
        ...(origin === undefined ? {} : { origin }),
        ...(host === undefined ? {} : { host }),
      }),
      tokenRequired,
    );

  it("accepts the page's own scheme, host and port (case-insensitive host)", () => {
    expect(own("http://127.0.0.1:8081", "127.0.0.1:8081")).to.equal(true);
    expect(own("https://fizz.example.com", "FIZZ.example.com")).to.equal(true);
    expect(own("http://[::1]:8081", "[::1]:8081")).to.equal(true);
  });

  for (const [origin, host, why] of [
    ["http://127.0.0.1:9999", "127.0.0.1:8081", "a page on another port of the same host"],
    ["http://127.0.0.1", "127.0.0.1:8081", "an Origin without the port the Host names"],
    ["null", "127.0.0.1:8081", "an opaque origin (sandboxed frame, file:)"],
    ["file:///tmp/x.html", "127.0.0.1:8081", "a file: page"],
    ["http://127.0.0.1:8081.evil.example", "127.0.0.1:8081", "a look-alike name"],
    ["not a url", "127.0.0.1:8081", "garbage"],
  ] as const)
    it(`refuses ${why}`, () => {
      expect(own(origin, host)).to.equal(false);
    });

  it("refuses a request without Origin or without Host (the usual rules apply to it)", () => {
    expect(own(undefined, "127.0.0.1:8081")).to.equal(false);
    expect(own("http://127.0.0.1:8081", undefined)).to.equal(false);
  });

  it("without tokens, accepts only hosts no DNS answer can rebind to another site's page", () => {
    expect(own("http://rebound.example:8081", "rebound.example:8081", false)).to.equal(false);
    expect(own("http://127.0.0.1:8081", "127.0.0.1:8081", false)).to.equal(true);
    expect(own("http://localhost:8081", "localhost:8081", false)).to.equal(true);
    expect(own("http://[::1]:8081", "[::1]:8081", false)).to.equal(true);
  });
});
