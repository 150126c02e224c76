// @ts-check
/**
 * POST /v2/specialize: validate, write and load the function, move the instance out of "warm"
 * exactly once (docs/runtime-contract.md). The JSON (single-file) form is handled here; the
 * archive form (a package) in specialize-archive.mjs, which shares the end (activate).
 */
import { mkdirSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { readBody, sendError, sendHttpError, sendJson } from "./http.mjs";
import { equalSecrets, sha256Digest } from "./sha256.mjs";
import { Limiter } from "./limiter.mjs";
import { LoadError, loadFunction } from "./loader.mjs";
import { validateSpecialize } from "./validate.mjs";
import { writeConfigFiles } from "./config-files.mjs";

/** @typedef {import("node:http").IncomingMessage} Req */
/** @typedef {import("node:http").ServerResponse} Res */
/**
 * @typedef {{
 *   instanceId: string | undefined,
 *   specializeToken: string | undefined,
 *   workdir: string | undefined,
 *   secretsDir: string | undefined,
 *   configsDir: string | undefined,
 *   maxBodyBytes: number,
 *   formMaxBytes: number,
 *   maxPackageBytes: number,
 *   maxPackageEntries: number,
 *   log: (...args: unknown[]) => void,
 * }} Config
 * @typedef {{
 *   handler: import("./loader.mjs").Handler,
 *   fn: import("./validate.mjs").FunctionRef,
 *   limiter: Limiter,
 *   concurrency: number,
 * }} Active
 * @typedef {{
 *   state: "warm" | "specializing" | "specialized" | "failed",
 *   active: Active | undefined,
 *   draining: boolean,
 * }} Instance
 */

/** Used when the specialize body carries no concurrency (docs/api.md: node environments, 50). */
export const DEFAULT_CONCURRENCY = 50;
/** The archive form's Content-Type: a line of JSON, then a tar.gz (specialize-archive.mjs). */
export const ARCHIVE_CONTENT_TYPE = "application/vnd.fizz.specialize+tar";

/**
 * @param {Req} req
 * @param {Res} res
 * @param {Instance} instance
 * @param {Config} config
 */
export async function specialize(req, res, instance, config) {
  if (!tokenMatches(config.specializeToken, req.headers["x-fizz-specialize-token"])) {
    res.setHeader("connection", "close"); // the body is not read
    const message = "x-fizz-specialize-token: missing or wrong; only the poolkeeper specializes";
    return sendError(res, 401, "UNAUTHENTICATED", message, { field: "x-fizz-specialize-token" });
  }
  if (instance.state !== "warm") return alreadySpecialized(res, instance);
  const contentType = (req.headers["content-type"] ?? "").split(";", 1)[0]?.trim().toLowerCase();
  if (contentType === ARCHIVE_CONTENT_TYPE) {
    // Loaded on first use: the single-file path never pays for the tar reader.
    const { specializeArchive } = await import("./specialize-archive.mjs");
    return specializeArchive(req, res, instance, config);
  }
  let raw;
  try {
    raw = await readBody(req, config.maxBodyBytes);
  } catch (err) {
    return sendHttpError(res, err);
  }
  let input;
  try {
    input = JSON.parse(raw.toString("utf8"));
  } catch {
    return sendError(res, 400, "VALIDATION_FAILED", "body: must be JSON", { field: "body" });
  }
  const checked = validateSpecialize(input, DEFAULT_CONCURRENCY);
  if (!checked.ok) {
    return sendError(res, 400, "VALIDATION_FAILED", checked.message, { field: checked.field });
  }
  const spec = checked.value;
  if (spec.digest !== undefined) {
    // Not node:crypto for a small file (sha256.mjs): an empty pool's start waited for its load.
    const actual = await sha256Digest(spec.code);
    if (actual !== spec.digest) {
      const message = `code: hashes to ${actual}, not ${spec.digest}; not loaded`;
      return sendError(res, 400, "DIGEST_MISMATCH", message, { field: "digest" });
    }
  }
  if (misdirected(res, spec, config)) return;
  // Another specialize may have won while this body was read.
  if (instance.state !== "warm") return alreadySpecialized(res, instance);

  instance.state = "specializing";
  const workdir = workdirOf(res, instance, config);
  if (workdir === undefined) return;
  const { filename, code, entrypoint } = spec;
  const load = () => loadFunction({ dir: workdir, filename, code, entrypoint });
  await activate(res, instance, config, { spec, workdir, load, what: filename });
}

/**
 * 421 when the request names another instance.
 * @param {Res} res
 * @param {{ instanceId: string | undefined }} spec
 * @param {Config} config
 * @returns {boolean} whether it answered
 */
export function misdirected(res, spec, config) {
  const { instanceId } = config;
  if (spec.instanceId === undefined || instanceId === undefined) return false;
  if (spec.instanceId === instanceId) return false;
  const message = `this is instance ${instanceId}, not ${spec.instanceId}`;
  sendError(res, 421, "MISDIRECTED", message, { retryable: true });
  return true;
}

/**
 * The instance's work directory: FIZZ_WORKDIR, else a fresh temp dir. Synchronous fs (here and
 * in the loaders): nothing else is being served yet. When it cannot be made, the instance is
 * broken: it answers 500 and fails.
 * @param {Res} res
 * @param {Instance} instance
 * @param {Config} config
 * @returns {string | undefined}
 */
export function workdirOf(res, instance, config) {
  try {
    if (!config.workdir) return mkdtempSync(join(tmpdir(), "fizz-fn-"));
    const dir = resolve(config.workdir);
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    return dir;
  } catch (err) {
    instance.state = "failed";
    config.log("[fizz] specialize failed: no work directory:", err);
    const message = `specialize failed: ${err instanceof Error ? err.message : String(err)}`;
    sendError(res, 500, "INTERNAL", message, { retryable: true });
    return undefined;
  }
}

/**
 * The end of every specialize, once the code is in place and checked: secrets and configmaps as
 * files, the function's environment, then its code; the instance is then specialized, or failed.
 * @param {Res} res
 * @param {Instance} instance in state "specializing"
 * @param {Config} config
 * @param {{
 *   spec: import("./validate.mjs").CommonSpec,
 *   workdir: string,
 *   load: () => Promise<import("./loader.mjs").Handler>,
 *   what: string,
 * }} loading `what` names the code in the log line
 */
export async function activate(res, instance, config, { spec, workdir, load, what }) {
  // hrtime, not performance.now(): the first use of `performance` loads perf_hooks, a millisecond.
  const started = process.hrtime.bigint();
  const { namespace, name, revision } = spec.function;
  const label = `${namespace}/${name}@${revision}`;
  try {
    const secretsDir = config.secretsDir ?? join(workdir, "secrets");
    const configsDir = config.configsDir ?? join(workdir, "configs");
    writeConfigFiles(secretsDir, namespace, spec.secrets);
    writeConfigFiles(configsDir, namespace, spec.configmaps);
    // The function's environment must be in place before its top-level code runs; the
    // directories last, so that `env` cannot point them elsewhere.
    Object.assign(process.env, spec.env, {
      FIZZ_SECRETS_DIR: secretsDir,
      FIZZ_CONFIGS_DIR: configsDir,
    });
    const handler = await load();
    instance.active = {
      handler,
      fn: spec.function,
      concurrency: spec.concurrency,
      limiter: new Limiter(spec.concurrency, spec.concurrency),
    };
    instance.state = "specialized";
  } catch (err) {
    instance.state = "failed";
    if (err instanceof LoadError) {
      config.log(`[fizz] ${label} failed to load: ${err.message}`);
      return sendError(res, 500, "FUNCTION_LOAD_FAILED", err.message);
    }
    config.log(`[fizz] ${label}: specialize failed:`, err);
    const message = `specialize failed: ${err instanceof Error ? err.message : String(err)}`;
    return sendError(res, 500, "INTERNAL", message, { retryable: true });
  }
  const loadMs = Math.round(Number(process.hrtime.bigint() - started) / 1e5) / 10;
  sendJson(res, 200, { status: "specialized", loadMs });
  // After the answer (end() has written it to the socket): the write to stderr (~0.3 ms) no
  // longer delays the poolkeeper's first call.
  config.log(`[fizz] specialized ${label} (${what}) in ${loadMs}ms`);
}

/**
 * Constant-time: both sides are hashed first, so the comparison is independent of their lengths
 * (equalSecrets). No token configured (a runtime started by hand): every specialize is accepted.
 * @param {string | undefined} expected
 * @param {string | string[] | undefined} given
 */
function tokenMatches(expected, given) {
  if (expected === undefined) return true;
  if (typeof given !== "string") return false;
  return equalSecrets(expected, given);
}

/**
 * @param {Res} res
 * @param {Instance} instance
 */
export function alreadySpecialized(res, instance) {
  const what =
    instance.state === "failed" ? "failed to load its function" : "is already specialized";
  const message = `this instance ${what}; an instance is specialized once`;
  sendError(res, 409, "ALREADY_SPECIALIZED", message);
}
