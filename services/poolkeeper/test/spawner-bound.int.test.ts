import { expect } from "chai";
import { once } from "node:events";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import type { Server } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { SPAWNER_SCRIPT, startSpawner, type Spawner } from "../src/spawner-client";
import type { SpawnedChild } from "../src/spawner-child";

const PYTHON = "/usr/bin/python3";

/**
 * The real spawner, except that the header of every connection for descriptor 1 names a token
 * nobody asked for: the client drops that connection, as it does one lost before its header was
 * read (the header timer firing after a stalled event loop), so the spawn can never complete.
 */
const LOSES_STDOUT = `
import importlib.util, socket, sys
sys.dont_write_bytecode = True  # as the script itself: no __pycache__ in the source tree
spec = importlib.util.spec_from_file_location("fizz_spawner", ${JSON.stringify(SPAWNER_SCRIPT)})
mod = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mod)
class Sock(socket.socket):
    def sendall(self, data, *a):
        if data.endswith(b" 1\\n"):
            data = b"0" * 32 + b" 1\\n"
        return super().sendall(data, *a)
class Shim:
    AF_UNIX, SOCK_STREAM, socket = socket.AF_UNIX, socket.SOCK_STREAM, Sock
mod.server.socket = Shim
mod.server.main(sys.argv)
`;

function children(pid: number): number[] {
  const text = readFileSync(`/proc/${pid}/task/${pid}/children`, "utf8").trim();
  return text ? text.split(/\s+/).map(Number) : [];
}

describe("spawner: every spawn has a bound", function () {
  this.timeout(30_000);
  let dir: string;
  let sp: Spawner | undefined;

  before(function () {
    if (!existsSync(PYTHON)) this.skip();
  });
  beforeEach(() => {
    dir = mkdtempSync(path.join(tmpdir(), "fizz-spawner-b-"));
  });
  afterEach(async () => {
    if (sp?.usable) await sp.close();
    sp = undefined;
    rmSync(dir, { recursive: true, force: true });
  });

  it("a spawn whose stream connection is lost fails with SPAWNER_FAILED at its bound, and its child is killed through the spawner", async () => {
    const script = path.join(dir, "loses-stdout.py");
    writeFileSync(script, LOSES_STDOUT);
    sp = await startSpawner({
      python: PYTHON,
      dir: path.join(dir, "sock"),
      script,
      log: () => undefined,
      spawnBoundMs: 300,
    });
    const spawnerPid = sp.pid!;
    const marker = path.join(dir, "ran");
    const spawned = sp.spawn({
      file: "/bin/sh",
      args: ["-c", `echo $$ > ${marker}; exec sleep 300`],
      cwd: "/",
      env: { PATH: "/usr/bin:/bin" },
      stdio: ["pipe", "pipe", "pipe"],
    });
    // Far past the bound: without one, the spawn never resolves.
    const child = await Promise.race([
      spawned,
      new Promise<undefined>((r) => setTimeout(() => r(undefined), 10_000).unref()),
    ]);
    expect(child, "the spawn resolved").to.not.equal(undefined);
    const err = await new Promise<Error>((r) => (child as SpawnedChild).once("error", r));
    expect(err).to.include({ name: "SpawnerError", code: "SPAWNER_FAILED" });
    expect(err.message).to.match(/did not complete within 300 ms/);
    expect((child as SpawnedChild).pid).to.equal(undefined);
    // The child exec'd (its sleep would run for 300 s) and the spawner killed and reaped it.
    while (!existsSync(marker) || children(spawnerPid).length > 0)
      await new Promise((r) => setTimeout(r, 20));
    expect(sp.usable).to.equal(true);
  });

  it("a child that runs past the bound is not touched by it: only the spawn is bounded", async () => {
    sp = await startSpawner({
      python: PYTHON,
      dir: path.join(dir, "sock"),
      log: () => undefined,
      spawnBoundMs: 1_000,
    });
    const child = await sp.spawn({
      file: "/bin/sh",
      args: ["-c", "sleep 1.5; echo hi"],
      cwd: "/",
      env: { PATH: "/usr/bin:/bin" },
      stdio: ["pipe", "pipe", "pipe"],
    });
    let out = "";
    child.stdout!.setEncoding("utf8").on("data", (c: string) => (out += c));
    const [code, signal] = (await once(child, "close")) as [number | null, string | null];
    expect([code, signal]).to.deep.equal([0, null]);
    expect(out).to.equal("hi\n");
  });

  it("a header that arrived in time is read even when the event loop was blocked past the header wait right after the accept", async function () {
    this.timeout(60_000);
    sp = await startSpawner({ python: PYTHON, dir: path.join(dir, "sock"), log: () => undefined });
    // A stall of the poolkeeper's loop (a long synchronous task) just after a connection was
    // accepted: its header timer is due before the poll phase gets to read the header.
    const server = (sp as unknown as { server: Server }).server;
    let stalled = false;
    server.on("connection", () => {
      if (stalled) return;
      stalled = true;
      const until = Date.now() + 10_500;
      while (Date.now() < until);
    });
    const child = await Promise.race([
      sp.spawn({
        file: "echo",
        args: ["hi"],
        cwd: "/",
        env: { PATH: "/usr/bin:/bin" },
        stdio: ["pipe", "pipe", "pipe"],
      }),
      new Promise<undefined>((r) => setTimeout(() => r(undefined), 25_000).unref()),
    ]);
    expect(child, "the spawn resolved").to.not.equal(undefined);
    expect(child!.pid, "the spawn succeeded").to.be.a("number");
    let out = "";
    child!.stdout!.setEncoding("utf8").on("data", (c: string) => (out += c));
    const [code] = (await once(child!, "close")) as [number | null];
    expect(code).to.equal(0);
    expect(out).to.equal("hi\n");
  });
});
