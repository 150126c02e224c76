import path from "node:path";
import { expect } from "chai";
import { resolveConsolePath } from "../src/console-http";

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
