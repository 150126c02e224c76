// The order of a specialize's last two writes (src/specialize.mjs): the answer first, then the
// "specialized" log line, so the write to stderr no longer delays the poolkeeper's first call.
// A real HTTP server in this process runs the real specialize; only the log function is ours.
import { expect } from "chai";
import { createHash } from "node:crypto";
import { createServer, type ServerResponse } from "node:http";
import { mkdtempSync, readdirSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { specialize } from "../src/specialize.mjs";

describe("node runtime: specialize.mjs", () => {
  it("writes the specialized line once the answer has been handed to the socket, into a work directory it made", async () => {
    const scratch = mkdtempSync(join(tmpdir(), "fizz-spec-unit-"));
    // Not there yet: the specialize makes it once (workdirOf), the loader writes into it.
    const workdir = join(scratch, "instances", "inst-1");
    const savedEnv = { ...process.env };
    const seen: Array<{ line: string; answered: boolean }> = [];
    let current: ServerResponse | undefined;
    const instance = { state: "warm" as const, active: undefined, draining: false };
    const config = {
      instanceId: "inst-1",
      specializeToken: undefined,
      workdir,
      secretsDir: undefined,
      configsDir: undefined,
      maxBodyBytes: 1 << 20,
      formMaxBytes: 1 << 20,
      maxPackageBytes: 1 << 20,
      maxPackageEntries: 10,
      log: (...args: unknown[]) =>
        seen.push({ line: args.join(" "), answered: current?.writableEnded === true }),
    };
    const server = createServer((req, res) => {
      current = res;
      void specialize(req, res, instance, config);
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    try {
      const { port } = server.address() as { port: number };
      const source = "module.exports = () => 'hi';\n";
      const res = await fetch(`http://127.0.0.1:${port}/v2/specialize`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({
          instanceId: "inst-1",
          function: { namespace: "default", name: "hello", revision: 1 },
          filename: "hello.js",
          code: Buffer.from(source).toString("base64"),
          digest: `sha256:${createHash("sha256").update(source).digest("hex")}`,
        }),
      });
      expect(res.status, await res.text()).to.equal(200);
      expect(seen).to.have.length(1);
      expect(seen[0]?.line).to.match(/^\[fizz\] specialized default\/hello@1 \(hello\.js\) in /);
      expect(seen[0]?.answered).to.equal(true);
      expect(statSync(workdir).mode & 0o777).to.equal(0o700);
      expect(readdirSync(workdir).sort()).to.deep.equal(["hello.js", "package.json"]);
    } finally {
      server.close();
      server.closeAllConnections();
      rmSync(scratch, { recursive: true, force: true });
      // The specialize set the function's environment in this process: put it back in place.
      // Not `process.env = savedEnv`: a plain object there cuts process.env off from the real
      // environment for every later test file in this mocha process (a TZ set no longer applies).
      for (const key of Object.keys(process.env)) if (!(key in savedEnv)) delete process.env[key];
      Object.assign(process.env, savedEnv);
    }
  });

  it("leaves process.env the process's real environment for the tests after it", () => {
    // Runs after the specialize above. On the real environment a TZ set takes effect at once.
    const saved = process.env.TZ;
    try {
      process.env.TZ = "Asia/Tokyo";
      expect(new Date(0).getHours()).to.equal(9);
    } finally {
      if (saved === undefined) delete process.env.TZ;
      else process.env.TZ = saved;
    }
  });
});
