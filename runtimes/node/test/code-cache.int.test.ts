// runtimes/node/prepare.mjs's V8 code cache and start-cached.cjs, which starts the one-file build
// with it: V8 takes the cache on this Node, the loader runs the bundle as Node runs a CommonJS main
// (ES-module functions through import(), CommonJS ones with relative requires), and a cache that
// anyone but the builder could have written is never vouched for. Built on a copy of the runtime.
import { spawnSync } from "node:child_process";
import {
  chmodSync,
  chownSync,
  cpSync,
  lstatSync,
  mkdtempSync,
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
    for (const f of ["server.mjs", "prepare.mjs", "package.json", "start-cached.cjs", "src"])
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
});
