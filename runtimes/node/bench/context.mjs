#!/usr/bin/env node
// @ts-check
/**
 * Micro-benchmark of the per-call context: parseBody + buildContext (src/context.mjs), the work
 * the warm path does for every call before the function runs, in process, without HTTP (whose
 * noise hides differences this small in coldstart.mjs's warm figure).
 *
 *   node runtimes/node/bench/context.mjs [base-runtimes-dir] [rounds]
 *
 * With a base directory (e.g. a `git archive` of an older commit) both are measured, round for
 * round alternating, and the figures are ns of CPU time per call (so that other processes on a
 * busy machine do not count), median of the rounds. Each case also
 * touches what a function typically reads (`context.body`, or `context.request.body` and
 * `get()` for the Fission-style case). Not a test: it asserts nothing and is run by hand.
 */
import { resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const HERE = fileURLToPath(new URL("../..", import.meta.url));
const BASE = process.argv[2] ? resolve(process.argv[2]) : undefined;
const ROUNDS = Number(process.argv[3] ?? 15);
const CALLS = 200_000;

/** @param {string} url @param {string} method @param {Record<string, string>} headers */
function fakeRequest(url, method, headers) {
  const rawHeaders = Object.entries(headers).flat();
  return { url, method, headers, rawHeaders, socket: { remoteAddress: "127.0.0.1" } };
}

const FORM_REQUEST = fakeRequest("/guestbook", "POST", {
  host: "h",
  "content-type": "application/x-www-form-urlencoded",
  "x-request-id": "r1",
});
const FORM_BODY = Buffer.from("text=hello+world&name=ada");
const FN = { namespace: "default", name: "bench", revision: 1 };
const CASES = {
  "GET, query": {
    req: fakeRequest("/hello?name=ada&x=1", "GET", { host: "h", "x-request-id": "r1" }),
    raw: Buffer.alloc(0),
    /** @param {any} c */ read: (c) => c.query.name,
  },
  "POST JSON": {
    req: fakeRequest("/orders", "POST", {
      host: "h",
      "content-type": "application/json",
      "x-request-id": "r1",
      "x-fizz-params-id": "7",
    }),
    raw: Buffer.from('{"items":[1,2,3],"note":"hi"}'),
    /** @param {any} c */ read: (c) => c.body.note,
  },
  "POST form, context.body": {
    req: FORM_REQUEST,
    raw: FORM_BODY,
    /** @param {any} c */ read: (c) => c.body,
  },
  // The base has no request.get or parsed form: it reads the string (the figure is the new cost).
  "POST form, request.body": {
    req: FORM_REQUEST,
    raw: FORM_BODY,
    /** @param {any} c */ read: (c) =>
      c.request.get ? (c.request.get("Content-Type"), c.request.body.text) : c.body,
  },
};

/** @param {string} runtimes */
async function load(runtimes) {
  const url = pathToFileURL(`${runtimes}/node/src/context.mjs`).href;
  return /** @type {typeof import("../src/context.mjs")} */ (await import(url));
}

/**
 * @param {Awaited<ReturnType<typeof load>>} mod
 * @param {(typeof CASES)[keyof typeof CASES]} kase
 */
function round(mod, kase) {
  const { req, raw, read } = kase;
  let sink = 0;
  const t0 = process.cpuUsage();
  for (let i = 0; i < CALLS; i++) {
    const context = mod.buildContext(
      /** @type {any} */ (req),
      raw,
      mod.parseBody(req.headers["content-type"], raw),
      FN,
    );
    const value = read(context);
    sink += typeof value === "string" ? value.length : 1;
  }
  const { user, system } = process.cpuUsage(t0);
  const ns = ((user + system) * 1000) / CALLS;
  if (sink < 0) console.log(sink);
  return ns;
}

/** @param {number[]} xs */
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN;

const subjects = [{ name: "this", mod: await load(HERE) }];
if (BASE) subjects.push({ name: "base", mod: await load(BASE) });
console.log(`context per call, CPU ns (median of ${ROUNDS} rounds of ${CALLS})`);
console.log(`${"".padEnd(28)}${subjects.map((s) => s.name.padStart(10)).join("")}`);
for (const [name, kase] of Object.entries(CASES)) {
  /** @type {number[][]} */
  const samples = subjects.map(() => []);
  for (let r = 0; r < ROUNDS; r++) subjects.forEach((s, i) => samples[i]?.push(round(s.mod, kase)));
  console.log(
    `${name.padEnd(28)}${samples.map((s) => median(s).toFixed(0).padStart(10)).join("")}`,
  );
}
