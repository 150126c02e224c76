// runtimes/node/prepare.mjs's V8 code cache and start-cached.cjs, which starts the one-file build
// with it: V8 takes the cache on this Node, the loader runs the bundle as Node runs a CommonJS main
// (ES-module functions through import(), CommonJS ones with relative requires), and a cache that
// anyone but the builder could have written is never vouched for. Built on a copy of the runtime.
import { spawn, spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import {
  chmodSync,
  chownSync,
  cpSync,
  existsSync,
  lstatSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { expect } from "chai";
import { ALWAYS } from "../prepare.mjs";
import { packageArchive } from "../../contract/archive.js";
import {
  request,
  specialize,
  specializeArchive,
  startRuntime,
  type Runtime,
} from "../../contract/harness.js";

const HERE = fileURLToPath(new URL("..", import.meta.url));
const WORKSPACE_MODULES = fileURLToPath(new URL("../../../node_modules", import.meta.url));

type Prepare = typeof import("../prepare.mjs");

describe("node runtime: V8 code cache of the one-file build (start-cached.cjs)", function () {
  this.timeout(60_000);
  let copy: string;
  let mod: Prepare;
  const running: Runtime[] = [];

  before(async () => {
    copy = mkdtempSync(join(tmpdir(), "fizz-node-cache-"));
    // What esbuild reads, and the rest of the build's inputs as prepare.mjs names them.
    for (const f of ["server.mjs", "src", ...ALWAYS])
      cpSync(join(HERE, f), join(copy, f), { recursive: true });
    symlinkSync(WORKSPACE_MODULES, join(copy, "node_modules"));
    mod = (await import(pathToFileURL(join(copy, "prepare.mjs")).href)) as Prepare;
  });
  afterEach(async () => {
    for (const rt of running.splice(0)) await rt.kill();
  });
  after(() => rmSync(copy, { recursive: true, force: true }));

  /** The loader as the process backend starts it for a waiting request (no rehearsal). */
  async function start(): Promise<Runtime> {
    const rt = await startRuntime(
      { name: "node", command: process.execPath, script: mod.LOADER, args: ["--report-cache"] },
      { FIZZ_WARM_UP: "0" },
    );
    running.push(rt);
    return rt;
  }

  it("is made after the bundle, readable by instance uids, and accepted by V8 on this Node", async () => {
    const built = await mod.prepare();
    expect(built.ok && built.cache?.file).to.equal(mod.CACHE);
    expect(mod.preparedCache()).to.equal(mod.CACHE);
    expect(statSync(mod.CACHE).mode & 0o777).to.equal(0o644);
    // Made after the rehearsal ran: the lazily compiled functions are in it, not the top level only.
    expect(statSync(mod.CACHE).size).to.be.greaterThan(50_000);
    const rt = await start();
    expect(rt.stderr()).to.include("[fizz] code cache accepted");
  });

  it("loads an ES-module function through import(), and a CommonJS package with relative requires", async () => {
    await mod.prepare();
    const esm = await start();
    const loaded = await specialize(
      esm,
      "greet.mjs",
      "import { basename } from 'node:path';\nexport default async () => 'esm ' + basename(import.meta.url);\n",
    );
    expect(loaded.status, loaded.text).to.equal(200);
    expect((await request(esm.url)).text).to.equal("esm greet.mjs");

    const cjs = await start();
    const archive = await packageArchive({
      "app.js":
        "const { greet } = require('./lib/greet');\nexports.handler = async () => greet('lib');\n",
      "lib/greet.js": "exports.greet = (who) => `hello from ${who}`;\n",
    });
    const pkg = await specializeArchive(cjs, archive, { entrypoint: "app.handler" });
    expect(pkg.status, pkg.text).to.equal(200);
    expect((await request(cjs.url)).text).to.equal("hello from lib");
  });

  it("starts without the cache when V8 rejects it (another Node or other flags): the instance still runs", async () => {
    await mod.prepare();
    // --no-lazy changes V8's flag hash: the cache does not match and V8 says so.
    const run = spawnSync(process.execPath, ["--no-lazy", mod.LOADER, "--report-cache"], {
      env: { PATH: process.env.PATH ?? "/usr/bin:/bin", PORT: "0", HOST: "127.0.0.1" },
      timeout: 3000,
      encoding: "utf8",
    });
    expect(run.stderr).to.include("[fizz] code cache rejected");
    expect(run.stderr).to.include("node runtime listening");
  });

  it("--check-cache (the image's build) exits 0 only when V8 takes the cache, without running the bundle", async () => {
    await mod.prepare();
    const env = { PATH: process.env.PATH ?? "/usr/bin:/bin", PORT: "0", HOST: "127.0.0.1" };
    const check = (flags: string[]) =>
      spawnSync(process.execPath, [...flags, mod.LOADER, "--check-cache"], {
        env,
        timeout: 5000,
        encoding: "utf8",
      });
    const taken = check([]);
    expect([taken.status, taken.stderr.trim()]).to.deep.equal([0, "[fizz] code cache accepted"]);
    // Other flags (V8 rejects the cache), then no cache at all: both fail the check, and neither
    // starts the runtime (it would listen and the check never end).
    const rejected = check(["--no-lazy"]);
    expect([rejected.status, rejected.stderr.trim()]).to.deep.equal([
      1,
      "[fizz] code cache rejected",
    ]);
    rmSync(mod.CACHE);
    const none = check([]);
    expect([none.status, none.stderr.trim()]).to.deep.equal([1, "[fizz] code cache none"]);
    expect((await mod.prepare()).ok).to.equal(true);
  });

  it("never vouches for a cache another user could have written or that is not the one made, and makes it again", async () => {
    await mod.prepare();
    const made = readFileSync(mod.CACHE);
    const elsewhere = mkdtempSync(join(tmpdir(), "fizz-node-cache-elsewhere-"));
    const planted = join(elsewhere, "planted.cache");
    const attacks: Array<[string, () => void]> = [
      ["world-writable", () => chmodSync(mod.CACHE, 0o666)],
      ["group-writable", () => chmodSync(mod.CACHE, 0o664)],
      // Other bytecode in its place, with the builder's owner and mode.
      [
        "replaced",
        () =>
          writeFileSync(
            mod.CACHE,
            Buffer.concat([made.subarray(0, 64), Buffer.alloc(made.length - 64)]),
          ),
      ],
      [
        "a link to a file elsewhere",
        () => {
          writeFileSync(planted, made);
          rmSync(mod.CACHE);
          symlinkSync(planted, mod.CACHE);
        },
      ],
    ];
    if (process.getuid?.() === 0)
      attacks.push(["owned by another uid", () => chownSync(mod.CACHE, 12345, 12345)]);
    try {
      for (const [what, attack] of attacks) {
        attack();
        expect(mod.preparedCache(), what).to.equal(undefined);
        // The bundle itself is still vouched for: only the cache is refused.
        expect(mod.prepared(), what).to.equal(mod.BUNDLE);
        const again = await mod.prepare();
        expect(again.ok && again.built, what).to.equal(false);
        expect(again.ok && again.cache?.file, what).to.equal(mod.CACHE);
        expect(mod.preparedCache(), what).to.equal(mod.CACHE);
        const st = lstatSync(mod.CACHE);
        expect(
          st.isFile() && (st.mode & 0o777) === 0o644 && st.uid === process.getuid?.(),
          what,
        ).to.equal(true);
      }
      // The link was replaced, never written through.
      expect(readFileSync(planted).equals(made)).to.equal(true);
    } finally {
      rmSync(elsewhere, { recursive: true, force: true });
    }
  });
  /** Pids of live (not zombie) processes whose command line has `needle`. */
  function processesWith(needle: string): number[] {
    const pids: number[] = [];
    for (const name of readdirSync("/proc")) {
      if (!/^\d+$/.test(name)) continue;
      try {
        const cmd = readFileSync(`/proc/${name}/cmdline`, "utf8");
        const state = readFileSync(`/proc/${name}/stat`, "utf8").split(") ")[1]?.[0];
        if (cmd.includes(needle) && state !== "Z") pids.push(Number(name));
      } catch {
        // gone meanwhile
      }
    }
    return pids;
  }

  async function until<T>(what: string, ms: number, f: () => T | undefined): Promise<T> {
    const end = Date.now() + ms;
    for (;;) {
      const v = f();
      if (v !== undefined) return v;
      if (Date.now() > end) throw new Error(`timed out: ${what}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  it("leaves no instance behind when prepare is killed while it makes the cache (review RV2)", async () => {
    await mod.prepare();
    rmSync(mod.CACHE);
    // As the poolkeeper's execFile timeout ends it: prepare alone, not its child.
    const prep = spawn(process.execPath, [join(copy, "prepare.mjs")], {
      env: { PATH: process.env.PATH ?? "/usr/bin:/bin" },
      stdio: "ignore",
    });
    const needle = `--write-cache=${mod.CACHE}`;
    let child: number[] = [];
    try {
      child = await until("the cache child", 20_000, () => {
        const found = processesWith(needle);
        return found.length > 0 ? found : undefined;
      });
      prep.kill("SIGKILL");
      await until("the cache child to exit after its parent", 5_000, () =>
        processesWith(needle).length === 0 ? true : undefined,
      );
    } finally {
      prep.kill("SIGKILL");
      for (const pid of processesWith(needle)) process.kill(pid, "SIGKILL");
    }
    expect(child.length).to.equal(1);
    // Nothing left in .build but what prepare vouches for (no temporary cache file).
    expect(readdirSync(mod.BUILD_DIR).filter((f) => f.endsWith(".tmp"))).to.deep.equal([]);
  });

  it("makes the cache again when the one stamped was made by another Node (V8 rejects it) (review RV2)", async () => {
    await mod.prepare();
    // Bytes V8 rejects here, as it rejects a cache of another V8 after a node upgrade: the same
    // loader and bundle under other flags (another flag hash, as another version has another tag).
    const foreign = join(copy, "foreign.cache");
    const maker = spawn(
      process.execPath,
      [
        "--no-lazy",
        mod.LOADER,
        `--write-cache=${foreign}`,
        `--bundle-sha256=${createHash("sha256").update(readFileSync(mod.BUNDLE)).digest("hex")}`,
      ],
      {
        env: { PATH: process.env.PATH ?? "/usr/bin:/bin", PORT: "0", HOST: "127.0.0.1" },
        stdio: ["pipe", "ignore", "pipe"],
      },
    );
    let err = "";
    maker.stderr.setEncoding("utf8").on("data", (d: string) => (err += d));
    await until("the --no-lazy loader to listen", 10_000, () =>
      err.includes("listening") ? true : undefined,
    );
    maker.kill("SIGUSR2");
    await new Promise((r) => maker.once("close", r));
    const bytes = readFileSync(foreign);
    rmSync(foreign);
    // Stamped as the older Node's prepare would have stamped it.
    const stampFile = join(mod.BUILD_DIR, "server.cjs.stamp.json");
    const stamp = JSON.parse(readFileSync(stampFile, "utf8")) as Record<string, unknown>;
    writeFileSync(mod.CACHE, bytes, { mode: 0o644 });
    const older = {
      ...stamp,
      cache: createHash("sha256").update(bytes).digest("hex"),
      ...("node" in stamp ? { node: "v18.20.4 x64" } : {}),
    };
    writeFileSync(stampFile, `${JSON.stringify(older)}\n`);
    const before = await start();
    expect(before.stderr()).to.include("[fizz] code cache rejected");
    await before.kill();
    running.splice(running.indexOf(before), 1);

    const again = await mod.prepare();
    expect(again.ok && again.cache?.file).to.equal(mod.CACHE);
    const rt = await start();
    expect(rt.stderr()).to.include("[fizz] code cache accepted");
    expect(existsSync(foreign)).to.equal(false);
  });
  it("never leaves the old cache next to a new bundle while the new cache is made (review RV2)", async () => {
    await mod.prepare();
    const oldCache = readFileSync(mod.CACHE);
    const oldBundle = readFileSync(mod.BUNDLE);
    // An edit that keeps the bundle's length: V8 checks little more than the source's length, so
    // it would take the old cache for the new bundle and run the old bytecode.
    const server = join(copy, "server.mjs");
    const text = readFileSync(server, "utf8");
    writeFileSync(server, text.replace("node runtime listening on", "node runtime LISTENING on"));
    const prep = spawn(process.execPath, [join(copy, "prepare.mjs")], {
      env: { PATH: process.env.PATH ?? "/usr/bin:/bin" },
      stdio: "ignore",
    });
    const needle = `--write-cache=${mod.CACHE}`;
    try {
      // The new bundle is in place and its cache is being made: what an instance started now finds.
      await until("the cache child", 30_000, () =>
        processesWith(needle).length > 0 ? true : undefined,
      );
      const bundle = readFileSync(mod.BUNDLE);
      expect(bundle.equals(oldBundle)).to.equal(false);
      expect(bundle.length).to.equal(oldBundle.length);
      const cache = existsSync(mod.CACHE) ? readFileSync(mod.CACHE) : undefined;
      expect(cache?.equals(oldCache) ?? false, "the old cache beside the new bundle").to.equal(
        false,
      );
    } finally {
      await new Promise((r) => (prep.exitCode !== null ? r(null) : prep.once("exit", r)));
      writeFileSync(server, text);
    }
    expect(mod.preparedCache()).to.equal(undefined); // sources changed back: not current
  });
  it("makes a cache only for the bundle prepare stamped, not another one found in its place (review RV2)", async () => {
    await mod.prepare();
    // As when another build renamed its bundle in between prepare's stamp and its child's read:
    // the child is told the bundle it makes the cache for, and finds another one.
    const out = join(copy, "other.cache");
    const child = spawn(
      process.execPath,
      [mod.LOADER, `--write-cache=${out}`, `--bundle-sha256=${"0".repeat(64)}`],
      {
        env: { PATH: process.env.PATH ?? "/usr/bin:/bin", PORT: "0", HOST: "127.0.0.1" },
        stdio: ["pipe", "ignore", "pipe"],
      },
    );
    let err = "";
    child.stderr.setEncoding("utf8").on("data", (d: string) => (err += d));
    const closed = new Promise((r) => child.once("close", r));
    await until("the loader to listen or exit", 10_000, () =>
      err.includes("listening") || child.exitCode !== null ? true : undefined,
    );
    if (child.exitCode === null) child.kill("SIGUSR2");
    await closed;
    expect(existsSync(out), err).to.equal(false);
    expect(child.exitCode).to.not.equal(0);
  });
  it("leaves nothing in the temporary directory after making the cache (review RV2)", async () => {
    await mod.prepare();
    rmSync(mod.CACHE);
    const tmp = mkdtempSync(join(tmpdir(), "fizz-node-cache-tmp-"));
    try {
      const run = spawnSync(process.execPath, [join(copy, "prepare.mjs")], {
        env: { PATH: process.env.PATH ?? "/usr/bin:/bin", TMPDIR: tmp },
        encoding: "utf8",
        timeout: 30_000,
      });
      expect(run.stdout, run.stderr).to.include('"cache":');
      // The tiny function's work directory included: one left per cache made, as the builder uid.
      expect(readdirSync(tmp)).to.deep.equal([]);
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
  });
});
