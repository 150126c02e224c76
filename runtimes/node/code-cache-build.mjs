// @ts-check
// The V8 code cache of the one-file build (.build/server.cjs.cache), made for prepare.mjs, which
// writes it and stamps it. Made by running the bundle once in a child as an empty-pool start runs
// it (no rehearsal; a specialize of a tiny function and its first call) and asking V8 for the
// cache after that, so it holds the functions compiled lazily on that path too (~89 KB; ~3-4 ms
// less instance CPU per empty-pool start; a cache taken before anything ran holds the top level
// only and saved ~1 ms). An input of the build (prepare.mjs's ALWAYS): editing it makes anew.
import { spawn } from "node:child_process";
import { request } from "node:http";
import { createServer } from "node:net";
import { createHash, randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

/**
 * The Node (so the V8) a cache was made by: V8 rejects another version's cache, and after a node
 * upgrade one stamped before it would be read and rejected at every start, never made again.
 * The child that makes it and the instances run this same executable (process.execPath).
 */
export const NODE_KEY = `${process.version} ${process.arch}`;
/** Making the cache runs the bundle once: well under a second; a hang must not hold the build. */
const CACHE_TIMEOUT_MS = 20_000;
const CACHE_INSTANCE = "fizz-code-cache";
const CACHE_SOURCE = 'module.exports = async (context) => ({ status: 200, body: "ok" });\n';

/** @param {Uint8Array} data */
const sha256 = (data) => createHash("sha256").update(data).digest("hex");

/**
 * Runs the bundle (through the loader, so the cache is made for the very text it will be used
 * with) as for a waiting request, specializes and calls a tiny function, then has it write V8's
 * cache. Of this process's environment only PATH and TMPDIR go to the child: no NODE_OPTIONS (flags V8 would then reject the cache
 * under, instances have none), no credentials of whoever runs the build.
 * @param {{ cache: string, loader: string, bundle: string, log: (line: string) => void }} opts
 * `cache`: where the cache goes (its temporary file is made next to it); `loader`:
 * start-cached.cjs; `bundle`: the SHA-256 of the bundle stamped, the child makes no cache of another
 * @returns {Promise<Uint8Array | undefined>}
 */
export async function makeCache({ cache, loader, bundle, log }) {
  const tmp = `${cache}.${process.pid}.${randomBytes(4).toString("hex")}.tmp`;
  const port = await freePort();
  const token = randomBytes(16).toString("hex");
  // The tiny function's work directory, as an instance has its own (FIZZ_WORKDIR): without one
  // the runtime makes a temp dir nobody removes, one per cache made (review RV2).
  const work = mkdtempSync(join(tmpdir(), "fizz-code-cache-"));
  /** @type {Record<string, string>} */
  const env = {
    PATH: process.env.PATH ?? "/usr/bin:/bin",
    PORT: String(port),
    HOST: "127.0.0.1",
    FIZZ_INSTANCE_ID: CACHE_INSTANCE,
    FIZZ_SPECIALIZE_TOKEN: token,
    FIZZ_WORKDIR: work,
    // Started as for a waiting request: the empty-pool path's functions, not the rehearsal's and
    // the archive preload's (a cache made after those was ~8% bigger and saved less: ~2 ms).
    FIZZ_WARM_UP: "0",
    // Its stdin is our pipe: it exits once we are gone (killed by the poolkeeper's timeout or an
    // operator), instead of staying up as this uid with no one to stop it (review RV2).
    FIZZ_PARENT_STDIN: "1",
  };
  if (process.env.TMPDIR) env.TMPDIR = process.env.TMPDIR;
  return new Promise((resolve) => {
    const child = spawn(
      process.execPath,
      [loader, `--write-cache=${tmp}`, `--bundle-sha256=${bundle}`],
      {
        env: { ...env, FIZZ_READY_FD: "3" },
        // stdin a pipe held open: the runtime takes its EOF as its parent gone.
        stdio: ["pipe", "ignore", "pipe", "pipe"],
      },
    );
    let stderr = "";
    child.stderr?.setEncoding("utf8").on("data", (d) => (stderr = (stderr + d).slice(-2000)));
    const timer = setTimeout(() => child.kill("SIGKILL"), CACHE_TIMEOUT_MS);
    child.stdio[3]?.once("data", () => {
      firstCall(port, token).then(
        () => child.kill("SIGUSR2"),
        (err) => {
          stderr += String(err);
          child.kill("SIGKILL");
        },
      );
    });
    child.stdio[3]?.on("error", () => undefined);
    child.on("error", () => undefined);
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      let data;
      try {
        if (code === 0) data = readFileSync(tmp);
      } catch {
        // not written
      }
      rmSync(tmp, { force: true });
      rmSync(work, { recursive: true, force: true });
      if (!data || data.length === 0)
        log(`fizz: no code cache for the node runtime (${signal ?? code}): ${stderr.trim()}`);
      resolve(data && data.length > 0 ? data : undefined);
    });
  });
}

/** @returns {Promise<number>} */
function freePort() {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      server.close(() => resolve(typeof address === "object" && address ? address.port : 0));
    });
  });
}

/**
 * An empty-pool start's work: the specialize of a tiny function, then its first call.
 * @param {number} port
 * @param {string} token
 */
async function firstCall(port, token) {
  const body = JSON.stringify({
    instanceId: CACHE_INSTANCE,
    function: { namespace: "fizz", name: "code-cache", revision: 0 },
    filename: "code-cache.js",
    code: Buffer.from(CACHE_SOURCE).toString("base64"),
    digest: `sha256:${sha256(Buffer.from(CACHE_SOURCE))}`,
  });
  const json = { "content-type": "application/json" };
  await send(port, "POST", "/v2/specialize", { ...json, "x-fizz-specialize-token": token }, body);
  await send(port, "GET", "/", { "x-fizz-instance": CACHE_INSTANCE, "x-request-id": "r1" }, "");
}

/**
 * @param {number} port
 * @param {string} method
 * @param {string} path
 * @param {Record<string, string>} headers
 * @param {string} body
 * @returns {Promise<void>}
 */
function send(port, method, path, headers, body) {
  return new Promise((resolve, reject) => {
    const req = request({ host: "127.0.0.1", port, method, path, headers, agent: false }, (res) => {
      res.resume();
      res.on("end", () =>
        res.statusCode === 200
          ? resolve()
          : reject(new Error(`${method} ${path}: ${res.statusCode}`)),
      );
    });
    req.on("error", reject);
    req.end(body);
  });
}
