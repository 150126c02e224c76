// @ts-check
/**
 * POST /v2/specialize: validate, write and load the function, move the instance out of "warm"
 * exactly once (docs/runtime-contract.md).
 */
import { createHash, timingSafeEqual } from "node:crypto";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { readBody, sendError, sendHttpError, sendJson } from "./http.mjs";
import { Limiter } from "./limiter.mjs";
import { LoadError, loadFunction } from "./loader.mjs";
import { validateSpecialize } from "./validate.mjs";

/** @typedef {import("node:http").IncomingMessage} Req */
/** @typedef {import("node:http").ServerResponse} Res */
/**
 * @typedef {{
 *   instanceId: string | undefined,
 *   specializeToken: string | undefined,
 *   workdir: string | undefined,
 *   maxBodyBytes: number,
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
const DEFAULT_CONCURRENCY = 50;

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
    const actual = `sha256:${createHash("sha256").update(spec.code).digest("hex")}`;
    if (actual !== spec.digest) {
      const message = `code: hashes to ${actual}, not ${spec.digest}; not loaded`;
      return sendError(res, 400, "DIGEST_MISMATCH", message, { field: "digest" });
    }
  }
  const { instanceId } = config;
  if (spec.instanceId !== undefined && instanceId !== undefined && spec.instanceId !== instanceId) {
    const message = `this is instance ${instanceId}, not ${spec.instanceId}`;
    return sendError(res, 421, "MISDIRECTED", message, { retryable: true });
  }
  // Another specialize may have won while this body was read.
  if (instance.state !== "warm") return alreadySpecialized(res, instance);

  instance.state = "specializing";
  // hrtime, not performance.now(): the first use of `performance` loads perf_hooks, a millisecond.
  const started = process.hrtime.bigint();
  const { namespace, name, revision } = spec.function;
  const label = `${namespace}/${name}@${revision}`;
  try {
    // The function's extra environment must be in place before its top-level code runs.
    Object.assign(process.env, spec.env);
    // Synchronous fs (here and in the loader): nothing else is being served yet.
    const dir = config.workdir ? resolve(config.workdir) : mkdtempSync(join(tmpdir(), "fizz-fn-"));
    const { filename, code, entrypoint } = spec;
    const handler = await loadFunction({ dir, filename, code, entrypoint });
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
  config.log(`[fizz] specialized ${label} (${spec.filename}) in ${loadMs}ms`);
  sendJson(res, 200, { status: "specialized", loadMs });
}

/**
 * Constant-time: hashing both sides first makes the comparison independent of their lengths.
 * No token configured (a runtime started by hand): every specialize is accepted.
 * @param {string | undefined} expected
 * @param {string | string[] | undefined} given
 */
function tokenMatches(expected, given) {
  if (expected === undefined) return true;
  if (typeof given !== "string") return false;
  const a = createHash("sha256").update(expected).digest();
  const b = createHash("sha256").update(given).digest();
  return timingSafeEqual(a, b);
}

/**
 * @param {Res} res
 * @param {Instance} instance
 */
function alreadySpecialized(res, instance) {
  const what =
    instance.state === "failed" ? "failed to load its function" : "is already specialized";
  const message = `this instance ${what}; an instance is specialized once`;
  sendError(res, 409, "ALREADY_SPECIALIZED", message);
}
