#!/usr/bin/env node
// @ts-check
/**
 * Fizz builder pod: builds one package per process, then exits (a fresh pod for every build, so
 * nothing a build leaves behind meets the next package). Kubernetes backend only; the process
 * backend builds in the poolkeeper (services/poolkeeper/src/build/).
 *
 *   GET  /healthz  -> {"state":"idle"|"building"|"done"}
 *   POST /build    Authorization: Bearer <FIZZ_BUILDER_TOKEN>
 *                  Content-Type: application/vnd.fizz.build+tar
 *                  body: ONE line of JSON (<= 64 KiB, ending in "\n"):
 *                    {"digest":"sha256:<hex of the tar.gz>","runtime":"node"|"python"|"go"|...|null,
 *                     "buildCommand"?:string,"env"?:{...},"timeoutSeconds":n}
 *                  then the source's tar.gz to the end of the body.
 *   -> 200 application/vnd.fizz.build-result+tar: ONE line of JSON
 *                    {"ok":bool,"message"?:string,"log":string}
 *                  then, when ok, the deployment as a tar.gz (the poolkeeper re-checks and
 *                  canonicalizes it: nothing here is trusted).
 *
 * The build gets only PATH (the image's), HOME/TMPDIR (its work directory), LANG, the npm cache
 * in the work directory, the environment's builder.env and SRC_PKG/DEPLOY_PKG (Go and C#:
 * runtimes/<lang>/build.sh with FIZZ_RUNTIMES_DIR, Go also a private GOPATH/GOCACHE and the
 * image's GOPROXY): never this process's other variables (its token).
 */
import { createHash } from "node:crypto";
import { createReadStream, createWriteStream } from "node:fs";
import { mkdir, mkdtemp } from "node:fs/promises";
import { createServer } from "node:http";
import path from "node:path";
import { finished } from "node:stream/promises";
import {
  buildNotes,
  buildSteps,
  deploymentDir,
  describeFailure,
  killLeftovers,
  LogTail,
  runStep,
  tar,
} from "./build.mjs";

const PORT = Number(process.env.PORT ?? 8888);
const TOKEN = process.env.FIZZ_BUILDER_TOKEN ?? "";
const WORK = process.env.FIZZ_WORKDIR ?? "/tmp";
const PYTHON = process.env.FIZZ_PYTHON ?? "python3";
/** Where runtimes/<lang>/build.sh are (the builder-go/-dotnet images: /runtimes). */
const RUNTIMES_DIR = process.env.FIZZ_RUNTIMES_DIR ?? path.resolve(import.meta.dirname, "..");
/** FIZZ_BUILDER_ONCE=0 keeps serving after a build (tests of this program only). */
const ONCE = process.env.FIZZ_BUILDER_ONCE !== "0";
const IMAGE_PATH = process.env.PATH ?? "/usr/local/bin:/usr/bin:/bin";
const LANG = process.env.LANG ?? "C.UTF-8";
const HEADER_MAX = 64 * 1024;
delete process.env.FIZZ_BUILDER_TOKEN;

/** @type {"idle" | "building" | "done"} */
let state = "idle";

if (!TOKEN) {
  console.error("[fizz-builder] FIZZ_BUILDER_TOKEN is required");
  process.exit(2);
}

/**
 * @param {import("node:http").ServerResponse} res
 * @param {number} status
 * @param {unknown} body
 */
function json(res, status, body) {
  res.writeHead(status, { "content-type": "application/json" });
  res.end(JSON.stringify(body));
}

/**
 * The JSON header line, then the rest of the body into `file` while hashing it.
 * @param {import("node:http").IncomingMessage} req
 * @param {string} file
 */
async function readRequest(req, file) {
  let head = Buffer.alloc(0);
  /** @type {Record<string, unknown> | undefined} */
  let header;
  const out = createWriteStream(file, { mode: 0o600 });
  const hash = createHash("sha256");
  for await (const chunk of req) {
    /** @type {Buffer} */
    let data = chunk;
    if (!header) {
      head = Buffer.concat([head, data]);
      const nl = head.indexOf(0x0a);
      if (nl < 0) {
        if (head.length > HEADER_MAX) throw new Error("the JSON line is over 64 KiB");
        continue;
      }
      header = JSON.parse(head.subarray(0, nl).toString("utf8"));
      data = head.subarray(nl + 1);
    }
    hash.update(data);
    if (!out.write(data)) await new Promise((r) => out.once("drain", r));
  }
  out.end();
  await finished(out);
  if (!header) throw new Error("no JSON line");
  const digest = `sha256:${hash.digest("hex")}`;
  if (header.digest !== digest)
    throw new Error(`the source hashes to ${digest}, not ${String(header.digest)}`);
  return header;
}

/**
 * @param {Record<string, unknown>} h
 * @param {string} dir
 * @param {string} sourceFile
 * @param {LogTail} log
 * @returns {Promise<{ ok: true, file: string } | { ok: false, message: string }>}
 */
async function build(h, dir, sourceFile, log) {
  const srcDir = path.join(dir, "src");
  const outDir = path.join(dir, "out");
  await mkdir(srcDir);
  await mkdir(outDir);
  try {
    await tar(["-xzf", sourceFile, "-C", srcDir, "--no-same-owner", "--no-same-permissions"]);
  } catch (err) {
    return { ok: false, message: `source archive refused: ${/** @type {Error} */ (err).message}` };
  }
  const timeoutSeconds = typeof h.timeoutSeconds === "number" ? h.timeoutSeconds : 300;
  const runtime = typeof h.runtime === "string" ? h.runtime : undefined;
  const buildCommand = typeof h.buildCommand === "string" ? h.buildCommand : undefined;
  const steps = buildSteps({
    runtime,
    buildCommand,
    srcDir,
    outDir,
    python: PYTHON,
    runtimesDir: RUNTIMES_DIR,
    hostEnv: process.env,
  });
  for (const line of buildNotes({ runtime, buildCommand, srcDir })) log.note(line);
  const builderEnv = /** @type {Record<string, string>} */ (
    typeof h.env === "object" && h.env !== null ? h.env : {}
  );
  const env = {
    ...Object.fromEntries(Object.entries(builderEnv).filter(([, v]) => typeof v === "string")),
    PATH: IMAGE_PATH,
    LANG,
    HOME: dir,
    TMPDIR: dir,
    npm_config_cache: path.join(dir, ".npm"),
    npm_config_update_notifier: "false",
    npm_config_fund: "false",
    npm_config_audit: "false",
  };
  const deadline = Date.now() + timeoutSeconds * 1000;
  for (const step of steps) {
    log.note(`$ ${step.label}`);
    const r = await runStep(step, { cwd: srcDir, env, deadline, graceMs: 3000, log });
    const failed = describeFailure(r, step.label, timeoutSeconds);
    if (failed) {
      killLeftovers();
      log.note(failed);
      return { ok: false, message: failed };
    }
  }
  if (steps.length === 0) log.note("nothing to build: the source is the deployment");
  killLeftovers();
  let deploy;
  try {
    deploy = await deploymentDir(srcDir, outDir);
  } catch (err) {
    return { ok: false, message: /** @type {Error} */ (err).message };
  }
  const file = path.join(dir, "deployment.tar.gz");
  await tar(["-czf", file, "-C", deploy, "."]);
  log.note(`deployment: ${path.basename(deploy)}/`);
  return { ok: true, file };
}

const server = createServer((req, res) => {
  const url = req.url ?? "/";
  if (req.method === "GET" && url === "/healthz") return json(res, 200, { state });
  if (url !== "/build") return json(res, 404, { message: "not found" });
  if (req.method !== "POST") return json(res, 405, { message: "POST only" });
  if (req.headers.authorization !== `Bearer ${TOKEN}`)
    return json(res, 401, { message: "a valid builder token is required" });
  if (state !== "idle") return json(res, 409, { message: `this builder is ${state}` });
  state = "building";
  res.once("close", () => {
    if (!ONCE) {
      state = "idle";
      return;
    }
    state = "done";
    server.close();
    setTimeout(() => process.exit(0), 100).unref();
  });
  void (async () => {
    const dir = await mkdtemp(path.join(WORK, "build-"));
    const log = new LogTail();
    let header;
    try {
      header = await readRequest(req, path.join(dir, "source.tar.gz"));
    } catch (err) {
      json(res, 400, { message: /** @type {Error} */ (err).message });
      return;
    }
    /** @type {{ ok: true, file: string } | { ok: false, message: string }} */
    let result;
    try {
      result = await build(header, dir, path.join(dir, "source.tar.gz"), log);
    } catch (err) {
      result = { ok: false, message: `build could not run: ${/** @type {Error} */ (err).message}` };
    }
    res.writeHead(200, { "content-type": "application/vnd.fizz.build-result+tar" });
    const line = result.ok
      ? { ok: true, log: log.text() }
      : { ok: false, message: result.message, log: log.text() };
    res.write(`${JSON.stringify(line)}\n`);
    if (result.ok) createReadStream(result.file).pipe(res);
    else res.end();
  })().catch((/** @type {Error} */ err) => {
    if (res.headersSent) res.destroy(err);
    else json(res, 500, { message: `build could not run: ${err.message}` });
  });
});

server.listen(PORT, process.env.HOST ?? "0.0.0.0", () => {
  console.log(`[fizz-builder] listening on ${PORT}`);
});
