// @ts-check
/**
 * The warm-up rehearsal. While the instance is generic, it specializes a throwaway instance with a
 * throwaway function and calls it, over real HTTP on loopback, through a private server that uses
 * the instance's own request listener. The first real specialize and call then find this code
 * compiled and Node's lazily loaded internals (the CommonJS loader, body reading, response
 * writing) loaded, instead of paying for them on the cold-start path.
 *
 * The instance's own state is never touched: the rehearsal has its own instance object, its own
 * work directory (removed afterwards) and its own server on an ephemeral loopback port.
 */
import { createHash, randomBytes } from "node:crypto";
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { createRequire } from "node:module";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve as resolvePath } from "node:path";
import { closeCall, openCall } from "./call-marker.mjs";
import { mayBeModule } from "./loader.mjs";
import { equalSecrets } from "./sha256.mjs";
import { validateSpecialize } from "./validate.mjs";

/** @typedef {import("node:http").Server} Server */
/** @typedef {import("./specialize.mjs").Instance} Instance */
/** @typedef {import("./specialize.mjs").Config} Config */

const ID = "fizz-rehearsal";
// The real specialize checks a token and a digest: rehearse both, so node:crypto's first use
// (a few ms of lazy OpenSSL set-up) is paid here, not on the cold-start path. The token is made
// at each rehearsal: its server's loopback port is open to any local process for as long as it
// runs, and one that sent a known token first would load its code into this pool instance, which
// later serves another function.
const FILENAME = "rehearsal.js";
// The common shapes: CommonJS `module.exports = async fn`, a response object, a JSON request body.
// With an `await`: a .js file that may be an ES module is compiled once to tell (loader.mjs's
// detectFormat), and that first compile (~0.25 ms) belongs here, not in a real specialize.
export const SOURCE = `module.exports = async (context) => ({ status: 200, body: { echo: await context.body } });\n`;
/** A rehearsal call never takes this long; if it does, give up rather than hold anything. */
const TIMEOUT_MS = 5_000;
/**
 * Token comparisons after the call, in rounds of HEAT_ROUND with the event loop free in between:
 * enough for V8 to hand the SHA-256 (the hottest code of a specialize) to its optimizing
 * compiler here (25 already did, measured with --trace-opt). Why: the first optimizing
 * compilation of a process costs its main thread ~2-3 ms (compiler code paged in for the first
 * time: ~3.4 MB of the node binary), and the one-file build (.build/server.cjs) reached it only
 * in the real specialize; started from the sources the ES module loader had got there during
 * start-up. 1-3 ms less CPU per warm-pool specialize + first call (median, 4 alternating runs).
 */
const HEAT_CALLS = 64;
const HEAT_ROUND = 16;
/**
 * Path resolutions after the call, in the same rounds: node:path's normalizeString, the loop under
 * every resolve() (the specialize's work directory, require()'s lookups of the function's file),
 * is the next function V8 optimizes on that path. How many resolutions the rehearsal, the archive
 * preload and start-up leave it short of that depends on the lengths of the runtime's and the
 * instance's paths: with the runtime under /work/main, or a short work directory, its optimizing
 * compile (~4 ms of a compiler thread, ~110 page faults) landed in the real specialize; with
 * longer paths, before the announcement. 256 calls on the real work directory's path get it
 * there first in every layout tried (--trace-opt; test/readiness.int.test.ts holds it).
 */
const PATH_HEAT_CALLS = 256;

/**
 * @param {{
 *   createServer: (instance: Instance, config: Config) => Server,
 *   shouldStop: () => boolean,
 *   workdir: string | undefined,
 * }} options `shouldStop` is asked between steps: true once the real specialize has begun.
 *   `workdir`, the instance's, is only used when the temp dir is not writable (a read-only root
 *   file system), for a hidden directory removed again at the end.
 */
export async function rehearse({ createServer, shouldStop, workdir }) {
  if (shouldStop()) return;
  const dir = scratchDir(workdir);
  const token = randomBytes(32).toString("base64url");
  /** @type {Instance} */
  const instance = { state: "warm", active: undefined, draining: false };
  /** @type {Config} */
  const config = {
    instanceId: ID,
    specializeToken: token,
    workdir: dir,
    secretsDir: undefined,
    configsDir: undefined,
    maxBodyBytes: 1 << 20,
    formMaxBytes: 1 << 20,
    maxPackageBytes: 1 << 20,
    maxPackageEntries: 1,
    log: () => {},
  };
  const server = createServer(instance, config);
  server.unref(); // never what keeps the process alive
  try {
    await new Promise((resolve, reject) => {
      server.once("error", reject);
      server.listen(0, "127.0.0.1", () => resolve(undefined));
    });
    const { port } = /** @type {import("node:net").AddressInfo} */ (server.address());
    const json = { "content-type": "application/json" };
    const body = {
      instanceId: ID,
      function: { namespace: "fizz", name: "rehearsal", revision: 0 },
      filename: FILENAME,
      code: Buffer.from(SOURCE).toString("base64"),
      digest: `sha256:${createHash("sha256").update(SOURCE).digest("hex")}`,
    };
    const auth = { ...json, "x-fizz-specialize-token": token };
    await send(port, "POST", "/v2/specialize", auth, JSON.stringify(body));
    if (shouldStop()) return;
    // A request id no call marker takes (it has a space): the rehearsal's call is no call's, so
    // a log line of the real instance printed while it runs does not turn on async context
    // tracking (src/call-marker.mjs).
    const requestId = "fizz rehearsal";
    const call = {
      ...json,
      "x-fizz-instance": ID,
      "x-request-id": requestId,
      "x-fizz-params-id": "1",
    };
    await send(port, "POST", "/rehearsal?q=1", call, '{"hello":"world"}');
    // The checks' regular expressions once more (the body's, the format detection's, the request
    // id's): V8 interprets a RegExp's first run and compiles it to native code on its second,
    // which was the real specialize's and first call's (six compiles, ~0.2 ms of the main thread).
    // Pure functions: nothing of the instance is touched.
    validateSpecialize(body, 1);
    mayBeModule(SOURCE);
    closeCall(openCall(requestId));
    const pathRound = (PATH_HEAT_CALLS / HEAT_CALLS) * HEAT_ROUND;
    const target = workdir ?? dir;
    for (let done = 0; done < HEAT_CALLS && !shouldStop(); done += HEAT_ROUND) {
      for (let i = 0; i < HEAT_ROUND; i++) equalSecrets(token, `${ID}-${i}`);
      for (let i = 0; i < pathRound; i++) resolvePath(target, FILENAME);
      await new Promise((resolve) => setImmediate(resolve));
    }
  } finally {
    server.close();
    server.closeAllConnections();
    const file = join(dir, FILENAME);
    const require = createRequire(file);
    try {
      delete require.cache[require.resolve(file)]; // resolve: the key is the real path
    } catch {
      // never written or never loaded: nothing cached
    }
    rmSync(dir, { recursive: true, force: true });
  }
}

/** @param {string | undefined} workdir */
function scratchDir(workdir) {
  try {
    return mkdtempSync(join(tmpdir(), "fizz-rehearsal-"));
  } catch (err) {
    if (!workdir) throw err;
    mkdirSync(workdir, { recursive: true, mode: 0o700 });
    return mkdtempSync(join(workdir, ".fizz-rehearsal-"));
  }
}

/**
 * One request on its own connection, written by hand: node:http's client would cost more to warm
 * up than the server code this rehearses. Resolves once the whole response is in; rejects
 * unless it is a 200.
 * @param {number} port
 * @param {string} method
 * @param {string} path
 * @param {Record<string, string>} headers
 * @param {string} body
 * @returns {Promise<void>}
 */
function send(port, method, path, headers, body) {
  const head = [
    `${method} ${path} HTTP/1.1`,
    "host: 127.0.0.1",
    `content-length: ${Buffer.byteLength(body)}`,
  ];
  for (const [name, value] of Object.entries(headers)) head.push(`${name}: ${value}`);
  const what = `${method} ${path}`;
  return new Promise((resolve, reject) => {
    const socket = connect(port, "127.0.0.1");
    socket.setTimeout(TIMEOUT_MS, () => socket.destroy(new Error(`${what}: no answer`)));
    socket.on("error", reject);
    socket.on("close", () => reject(new Error(`${what}: connection closed before the response`)));
    let received = "";
    socket.setEncoding("utf8");
    socket.on("data", (chunk) => {
      received += chunk;
      const end = received.indexOf("\r\n\r\n");
      if (end < 0) return;
      const length = Number(/\r\ncontent-length: *(\d+)/i.exec(received.slice(0, end))?.[1] ?? 0);
      if (received.length < end + 4 + length) return; // the bodies here are ASCII JSON
      socket.destroy();
      if (received.startsWith("HTTP/1.1 200 ")) resolve();
      else reject(new Error(`${what}: ${received.split("\r\n", 1)[0]} ${received.slice(end + 4)}`));
    });
    // write, not end: a half-closed connection makes the server abort the request.
    socket.write(`${head.join("\r\n")}\r\n\r\n${body}`);
  });
}
