import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { chmod, mkdir, mkdtemp, open, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { expect } from "chai";
import { zip } from "../../shared/kit/test/archive-builders";
import { startPlatform, type Platform } from "./helpers";
import { dumpLogsOnFailure, eventually, Instances, pidOfInstance, sleep, timed } from "./probes";
import type { Timed } from "./probes";

/**
 * Issue 11, packages as a user makes them: multi-file functions, dependencies installed by the
 * builder (npm from the registry, pip from a local wheel directory), failed and timed-out builds,
 * prebuilt deployments, an update under load, and a 100 MiB archive through the whole path with
 * every platform process's memory bounded.
 */
describe("packages and builds, end to end", function () {
  this.timeout(240_000);
  let p: Platform;
  let instances: Instances;
  /** World-readable scratch space: builds run as other uids and must read what is put here. */
  let shared: string;

  before(async () => {
    p = await startPlatform({
      FIZZ_REAP_INTERVAL_MS: "200",
      FIZZ_REPORT_INTERVAL_MS: "200",
      FIZZ_DRAIN_MS: "1000",
      FIZZ_KILL_GRACE_MS: "500",
    });
    instances = await Instances.connect(p);
    shared = await mkdtemp(path.join(tmpdir(), "fizz-e2e-shared-"));
    await chmod(shared, 0o755);
    await ok("env", "create", "--name", "python", "--image", "fizz/env-python", "--poolsize", "2");
    await ok("env", "create", "--name", "node", "--image", "fizz/env-node", "--poolsize", "2");
  });
  after(async () => {
    await instances?.close();
    await p?.stop();
    if (shared) await rm(shared, { recursive: true, force: true });
  });
  afterEach(dumpLogsOnFailure(() => p, 120));

  async function ok(...args: string[]) {
    const r = await p.fizz(...args);
    expect(r.code, `fizz ${args.join(" ")}\n${r.stdout}\n${r.stderr}`).to.equal(0);
    return r;
  }

  /** Writes `files` (relative path -> content) under <workDir>/<name>/ and returns that dir. */
  async function tree(name: string, files: Record<string, string | Buffer>): Promise<string> {
    const root = path.join(p.workDir, name);
    for (const [rel, content] of Object.entries(files)) {
      const file = path.join(root, rel);
      await mkdir(path.dirname(file), { recursive: true });
      await writeFile(file, content);
    }
    return root;
  }

  async function answer(route: string) {
    const r = await timed(`${p.gatewayUrl}${route}`);
    expect(r.status, `${route}: ${r.text || r.error}`).to.equal(200);
    return r.text;
  }

  interface PackageJson {
    spec: { source?: { digest: string }; deployment?: { digest: string } };
    status: {
      buildState: string;
      buildLog: string;
      message?: string;
      deployment?: unknown;
      startedAt?: string;
      finishedAt?: string;
    };
  }

  async function pkgInfo(name: string): Promise<PackageJson> {
    const r = await ok("pkg", "info", "--name", name, "-o", "json");
    return JSON.parse(r.stdout) as PackageJson;
  }

  it("a multi-file Python package: main.main imports a sibling module", async () => {
    const src = await tree("pyapp", {
      "main.py":
        "from helper import greet\n\ndef main(context):\n    return greet(context.query.get('who', 'world'))\n",
      "helper.py": "def greet(who):\n    return 'hello ' + who + ' from helper'\n",
    });
    await ok(
      "fn",
      "create",
      "--name",
      "pyapp",
      "--env",
      "python",
      "--src",
      src,
      "--entrypoint",
      "main.main",
      "--route",
      "/pyapp",
    );
    expect(await answer("/pyapp?who=fizz")).to.equal("hello fizz from helper");
  });

  it("a multi-file Node package: index.handler requires ./lib/x.js", async () => {
    const src = await tree("nodeapp", {
      "index.js":
        'const x = require("./lib/x.js");\nexports.handler = async (ctx) => ({ status: 200, body: x.hello(ctx.query.who ?? "world") });\n',
      "lib/x.js": 'exports.hello = (who) => "hello " + who + " from lib/x";\n',
    });
    await ok(
      "fn",
      "create",
      "--name",
      "nodeapp",
      "--env",
      "node",
      "--src",
      src,
      "--entrypoint",
      "index.handler",
      "--route",
      "/nodeapp",
    );
    expect(await answer("/nodeapp?who=fizz")).to.equal("hello fizz from lib/x");
  });

  it("a Node function with an npm dependency (ms@2.1.3) installed by the builder", async () => {
    const src = await tree("nodedep", {
      "package.json": JSON.stringify({
        name: "nodedep",
        version: "1.0.0",
        main: "index.js",
        dependencies: { ms: "2.1.3" },
      }),
      "index.js":
        'const ms = require("ms");\nmodule.exports = async () => ({ status: 200, body: String(ms("2h")) + " " + require("ms/package.json").version });\n',
    });
    const started = performance.now();
    await ok("fn", "create", "--name", "nodedep", "--env", "node", "--src", src);
    console.log(`      npm build + create: ${Math.round(performance.now() - started)} ms`);
    expect(await answer("/function/nodedep")).to.equal("7200000 2.1.3");
    const pkg = await pkgInfo("nodedep");
    expect(pkg.status.buildState).to.equal("succeeded");
    expect(pkg.status.buildLog).to.match(/npm/);
  });

  it("a Python function with a dependency from a local wheel directory (PIP_FIND_LINKS, PIP_NO_INDEX)", async () => {
    // The wheel is built here, from a tiny setup.py package, so no index is needed at all.
    const pkgDir = path.join(shared, "fizztiny-src");
    const wheels = path.join(shared, "wheels");
    await mkdir(pkgDir, { recursive: true });
    await mkdir(wheels, { recursive: true, mode: 0o755 });
    await writeFile(
      path.join(pkgDir, "setup.py"),
      'from setuptools import setup\nsetup(name="fizztiny", version="0.1", py_modules=["fizztiny"])\n',
    );
    await writeFile(path.join(pkgDir, "fizztiny.py"), 'def answer():\n    return "tiny-42"\n');
    await promisify(execFile)(
      "/usr/bin/python3",
      ["-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", wheels, pkgDir],
      { cwd: shared, timeout: 60_000 },
    );
    await promisify(execFile)("chmod", ["-R", "a+rX", wheels]);

    const env = await p.api("POST", "/v1/namespaces/default/environments", {
      name: "pywheel",
      spec: {
        image: "fizz/env-python",
        poolSize: 1,
        builder: { env: { PIP_FIND_LINKS: wheels, PIP_NO_INDEX: "1" } },
      },
    });
    expect(env.status, env.text).to.equal(201);
    const src = await tree("pywheel", {
      "requirements.txt": "fizztiny==0.1\n",
      "main.py": "import fizztiny\n\ndef main(context):\n    return fizztiny.answer()\n",
    });
    await ok("fn", "create", "--name", "pywheel", "--env", "pywheel", "--src", src);
    expect(await answer("/function/pywheel")).to.equal("tiny-42");
    const pkg = await pkgInfo("pywheel");
    expect(pkg.status.buildState).to.equal("succeeded");
    expect(pkg.status.buildLog).to.match(/fizztiny/);
  });

  it("a failing build: fn create exits non-zero with the log tail, creates no function; pkg info shows the failure and the log", async () => {
    const src = await tree("failing", { "main.py": "def main(context):\n    return 'never'\n" });
    const buildCmd = "echo FAILMARK-out; echo FAILMARK-err >&2; exit 7";
    const r = await p.fizz(
      "fn",
      "create",
      "--name",
      "failing",
      "--env",
      "python",
      "--src",
      src,
      "--build-cmd",
      buildCmd,
    );
    expect(r.code, r.stdout + r.stderr).to.not.equal(0);
    expect(r.stderr)
      .to.match(/FAILMARK-err/)
      .and.to.match(/FAILMARK-out/);
    expect(r.stderr).to.match(/fail/i);
    const fn = await p.fizz("fn", "get", "--name", "failing");
    expect(fn.code, "no function was created").to.not.equal(0);
    expect(fn.stderr + fn.stdout).to.match(/not found|NOT_FOUND/i);

    // The failed package stays, so `fizz pkg info` shows why (the CLI says so).
    expect(r.stderr).to.include("fizz pkg info --name failing");
    const pkg = await pkgInfo("failing");
    expect(pkg.status.buildState).to.equal("failed");
    expect(pkg.status.buildLog)
      .to.match(/FAILMARK-out/)
      .and.to.match(/FAILMARK-err/);
    expect(pkg.status.message ?? "").to.match(/7|exit/);
    const table = await ok("pkg", "info", "--name", "failing");
    expect(table.stdout)
      .to.match(/failed/)
      .and.to.match(/FAILMARK-err/);

    // Run again with the source fixed: the leftover package is reused and the function made.
    const again = await p.fizz(
      "fn",
      "create",
      "--name",
      "failing",
      "--env",
      "python",
      "--src",
      src,
    );
    expect(again.code, again.stdout + again.stderr).to.equal(0);
    expect((await pkgInfo("failing")).status.buildState).to.equal("succeeded");
  });

  it("a build over its time limit (builder timeoutSeconds: 2, sleep 30) is reported failed, timed out, within seconds", async () => {
    const env = await p.api("POST", "/v1/namespaces/default/environments", {
      name: "pyslow",
      spec: { image: "fizz/env-python", poolSize: 0, builder: { timeoutSeconds: 2 } },
    });
    expect(env.status, env.text).to.equal(201);
    const src = await tree("slow", { "main.py": "def main(context):\n    return 'slow'\n" });
    const started = performance.now();
    const r = await p.fizz(
      "pkg",
      "create",
      "--name",
      "slow",
      "--env",
      "pyslow",
      "--src",
      src,
      "--build-cmd",
      "echo SLOWMARK; sleep 30",
    );
    const ms = performance.now() - started;
    console.log(`      timed-out build reported after ${Math.round(ms)} ms`);
    expect(r.code, r.stdout + r.stderr).to.not.equal(0);
    expect(r.stderr).to.match(/timed out/i);
    const pkg = await pkgInfo("slow");
    expect(pkg.status.buildState).to.equal("failed");
    // The build itself: stopped at its limit (2 s) plus the kill grace, whatever the load.
    const ran = Date.parse(pkg.status.finishedAt ?? "") - Date.parse(pkg.status.startedAt ?? "");
    console.log(`      the build ran ${ran} ms`);
    expect(ran).to.be.within(1900, 8000);
    // The CLI's own start-up and polling count here too (and this machine may be busy).
    expect(ms).to.be.below(30_000);
    expect(pkg.status.message ?? "").to.match(/timed out/i);
    expect(pkg.status.buildLog).to.match(/SLOWMARK/);
  });

  it("--deploy of a prebuilt zip is used as is (its node_modules included, no build)", async () => {
    const archive = path.join(p.workDir, "prebuilt.zip");
    await writeFile(
      archive,
      zip([
        {
          name: "index.js",
          data: 'const t = require("tinydep");\nmodule.exports = async () => ({ status: 200, body: t() });\n',
        },
        { name: "node_modules/tinydep/package.json", data: '{"name":"tinydep","main":"main.js"}' },
        {
          name: "node_modules/tinydep/main.js",
          data: 'module.exports = () => "prebuilt ok";\n',
          deflate: true,
        },
      ]),
    );
    await ok(
      "fn",
      "create",
      "--name",
      "prebuilt",
      "--env",
      "node",
      "--deploy",
      archive,
      "--route",
      "/prebuilt",
    );
    expect(await answer("/prebuilt")).to.equal("prebuilt ok");
    const pkg = await pkgInfo("prebuilt");
    expect(pkg.spec.source, "a deployment has no source").to.equal(undefined);
    expect(pkg.spec.deployment?.digest).to.match(/^sha256:[0-9a-f]{64}$/);
  });

  it("a package updated under steady load: no error, and no v1 answer once fn update --src returns", async () => {
    const v1 = await tree("ver-v1", {
      "main.py": "from ver import VERSION\n\ndef main(context):\n    return VERSION\n",
      "ver.py": 'VERSION = "v1"\n',
    });
    const v2 = await tree("ver-v2", {
      "main.py": "from ver import VERSION\n\ndef main(context):\n    return VERSION\n",
      "ver.py": 'VERSION = "v2"\n',
    });
    await ok(
      "fn",
      "create",
      "--name",
      "ver",
      "--env",
      "python",
      "--src",
      v1,
      "--concurrency",
      "4",
      "--max-instances",
      "3",
    );
    const url = `${p.gatewayUrl}/function/ver`;
    expect(await answer("/function/ver")).to.equal("v1");
    const samples: (Timed & { loop: number })[] = [];
    let running = true;
    const loops = Promise.all(
      Array.from({ length: 4 }, async (_, loop) => {
        while (running) samples.push({ ...(await timed(url)), loop });
      }),
    );
    const t0 = performance.now();
    await sleep(800);
    await ok("fn", "update", "--name", "ver", "--src", v2);
    const acked = performance.now();
    await sleep(1500);
    running = false;
    await loops;

    const show = (bad: typeof samples) =>
      bad
        .slice(0, 10)
        .map(
          (s) =>
            `loop ${s.loop} at +${Math.round(s.startedAt - t0)} ms (ack at +${Math.round(acked - t0)}): ${s.status} ${s.error ?? s.text.slice(0, 200)}`,
        )
        .concat(`(${bad.length} of ${samples.length})`)
        .join("\n");
    const failed = samples.filter((s) => s.status !== 200);
    expect(failed, `errors during the update:\n${show(failed)}`).to.deep.equal([]);
    const stale = samples.filter((s) => s.startedAt >= acked && s.text !== "v2");
    expect(stale, `old answers after fn update returned:\n${show(stale)}`).to.deep.equal([]);
    expect(samples.some((s) => s.text === "v1")).to.equal(true);
    expect(samples.filter((s) => s.startedAt >= acked).length).to.be.at.least(4);
    console.log(`      ${samples.length} requests through the package update`);
  });

  it("a 100 MiB archive goes through upload, store, build and specialize with every platform process's memory bounded", async () => {
    const SIZE = 100 * 1024 * 1024;
    const src = await tree("big", {
      "main.py":
        "import os\n\ndef main(context):\n    return str(os.path.getsize(os.path.join(os.path.dirname(os.path.abspath(__file__)), 'blob.bin')))\n",
    });
    // Random bytes: gzip cannot shrink them, so 100 MiB really travel every hop.
    const fh = await open(path.join(src, "blob.bin"), "w");
    for (let written = 0; written < SIZE; written += 4 * 1024 * 1024)
      await fh.write(randomBytes(4 * 1024 * 1024));
    await fh.close();

    const peak: Record<string, number> = {};
    let sampling = true;
    const sample = async () => {
      while (sampling) {
        for (const [name, pid] of Object.entries(p.pids())) {
          const rss = await rssOf(pid);
          if (rss !== undefined) peak[name] = Math.max(peak[name] ?? 0, rss);
        }
        for (const i of await instances.of("big").catch(() => [])) {
          const pid = pidOfInstance(i.id);
          const rss = pid === undefined ? undefined : await rssOf(pid);
          if (rss !== undefined) peak["instance"] = Math.max(peak["instance"] ?? 0, rss);
        }
        await sleep(100);
      }
    };
    const sampler = sample();
    const started = performance.now();
    const startedAt = Date.now();
    try {
      await ok(
        "fn",
        "create",
        "--name",
        "big",
        "--env",
        "python",
        "--src",
        src,
        "--timeout",
        "120",
      );
      const created = performance.now();
      expect(await answer("/function/big")).to.equal(String(SIZE));
      console.log(
        `      100 MiB: upload+build ${Math.round(created - started)} ms, first call ${Math.round(performance.now() - created)} ms`,
      );
    } finally {
      sampling = false;
      await sampler;
    }
    // VmHWM: the peak since each process started, so nothing between two samples is missed.
    for (const [name, pid] of Object.entries(p.pids())) {
      const hwm = await hwmOf(pid);
      if (hwm !== undefined) peak[name] = Math.max(peak[name] ?? 0, hwm);
    }
    for (const i of await instances.of("big")) {
      const pid = pidOfInstance(i.id);
      const hwm = pid === undefined ? undefined : await hwmOf(pid);
      if (hwm !== undefined) peak["instance"] = Math.max(peak["instance"] ?? 0, hwm);
    }
    // Where the time went, from the services' own log lines and the package's build times.
    const uploaded = p.logs
      .filter((l) => l.includes("archive uploaded and canonicalized") && /"size":1\d{8}/.test(l))
      .map((l) => /"time":(\d+)/.exec(l)?.[1])
      .filter((t) => t !== undefined)
      .map(Number);
    const pkg = await pkgInfo("big");
    const since = (t: number | undefined) =>
      t === undefined || Number.isNaN(t) ? "?" : `+${t - startedAt} ms`;
    console.log(
      `      source stored ${since(uploaded[0])}, build started ${since(Date.parse(pkg.status.startedAt ?? ""))}, finished ${since(Date.parse(pkg.status.finishedAt ?? ""))}`,
    );
    const mib = (b: number) => (b / 1024 / 1024).toFixed(0);
    console.log(
      `      peak RSS (MiB): ${Object.entries(peak)
        .map(([n, b]) => `${n} ${mib(b)}`)
        .join(", ")}`,
    );
    for (const name of ["nats", "redis", "registry", "scheduler", "poolkeeper", "gateway"]) {
      expect(peak[name], `peak RSS of ${name} was sampled`).to.be.a("number");
      expect(peak[name], `${name} peak RSS ${mib(peak[name] ?? 0)} MiB`).to.be.below(
        250 * 1024 * 1024,
      );
    }
    await eventually("the big function's instance is listed", () => instances.of("big"), 5000);
  });
});

async function statusField(pid: number, field: string): Promise<number | undefined> {
  try {
    const m = new RegExp(`${field}:\\s+(\\d+) kB`).exec(
      await readFile(`/proc/${pid}/status`, "latin1"),
    );
    return m?.[1] ? Number(m[1]) * 1024 : undefined;
  } catch {
    return undefined;
  }
}
const rssOf = (pid: number) => statusField(pid, "VmRSS");
const hwmOf = (pid: number) => statusField(pid, "VmHWM");
