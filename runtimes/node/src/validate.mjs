// @ts-check
/**
 * Validation of the POST /v2/specialize body (docs/runtime-contract.md). The first problem found
 * is reported with the JSON path of the offending field, so the poolkeeper's log says what to fix.
 */

/**
 * @typedef {{ namespace: string, name: string, revision: number }} FunctionRef
 * @typedef {{
 *   instanceId: string | undefined,
 *   function: FunctionRef,
 *   filename: string,
 *   code: Buffer,
 *   entrypoint: string | undefined,
 *   concurrency: number,
 *   env: Record<string, string>,
 *   digest: string | undefined,
 * }} SpecializeRequest
 * @typedef {{ ok: true, value: SpecializeRequest } | { ok: false, field: string, message: string }} Validation
 */

// A bare file name: no directory part, no leading dot, so writing it can never leave the workdir
// or shadow a dotfile; the extension picks the module system.
const FILENAME = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,254}\.(?:js|mjs|cjs)$/;
// Strict base64 (the registry sends standard, padded base64 without line breaks).
const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;
// `fn` or `file.fn`; the function part must be an identifier.
const ENTRYPOINT = /^(?:[A-Za-z0-9_][A-Za-z0-9_.-]*\.)?[A-Za-z_$][A-Za-z0-9_$]*$/;
const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
const DIGEST = /^sha256:[0-9a-f]{64}$/;
const MAX_CONCURRENCY = 10000;

/**
 * @param {unknown} value
 * @returns {value is Record<string, unknown>}
 */
function isObject(value) {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/**
 * @param {string} field
 * @param {string} message
 * @returns {Validation}
 */
function fail(field, message) {
  return { ok: false, field, message: `${field}: ${message}` };
}

/**
 * @param {unknown} body parsed JSON
 * @param {number} defaultConcurrency
 * @returns {Validation}
 */
export function validateSpecialize(body, defaultConcurrency) {
  if (!isObject(body)) return fail("body", "must be a JSON object");

  const { instanceId, function: fn, filename, code, entrypoint, concurrency, env, digest } = body;
  if (instanceId !== undefined && (typeof instanceId !== "string" || instanceId === "")) {
    return fail("instanceId", "must be a non-empty string");
  }

  if (!isObject(fn)) return fail("function", "must be an object {namespace, name, revision}");
  for (const key of /** @type {const} */ (["namespace", "name"])) {
    if (typeof fn[key] !== "string" || fn[key] === "") {
      return fail(`function.${key}`, "must be a non-empty string");
    }
  }
  if (!Number.isSafeInteger(fn.revision) || /** @type {number} */ (fn.revision) < 0) {
    return fail("function.revision", "must be a non-negative integer");
  }

  if (typeof filename !== "string" || !FILENAME.test(filename)) {
    return fail("filename", "must be a file name (no directory) ending in .js, .mjs or .cjs");
  }
  if (typeof code !== "string" || !BASE64.test(code)) {
    return fail("code", "must be the file's content in base64");
  }
  if (entrypoint !== undefined && entrypoint !== null && entrypoint !== "") {
    if (typeof entrypoint !== "string" || !ENTRYPOINT.test(entrypoint)) {
      return fail("entrypoint", "must be 'fn' or 'file.fn'");
    }
  }
  if (concurrency !== undefined && concurrency !== null) {
    if (
      !Number.isInteger(concurrency) ||
      /** @type {number} */ (concurrency) < 1 ||
      /** @type {number} */ (concurrency) > MAX_CONCURRENCY
    ) {
      return fail("concurrency", `must be an integer between 1 and ${MAX_CONCURRENCY}`);
    }
  }
  /** @type {Record<string, string>} */
  const extraEnv = {};
  if (env !== undefined && env !== null) {
    if (!isObject(env)) return fail("env", "must be an object of strings");
    for (const [key, value] of Object.entries(env)) {
      if (!ENV_NAME.test(key)) return fail(`env.${key}`, "is not a valid variable name");
      if (typeof value !== "string") return fail(`env.${key}`, "must be a string");
      extraEnv[key] = value;
    }
  }

  if (digest !== undefined && digest !== null) {
    if (typeof digest !== "string" || !DIGEST.test(digest)) {
      return fail("digest", "must be sha256:<64 lowercase hex digits>");
    }
  }

  return {
    ok: true,
    value: {
      instanceId: /** @type {string | undefined} */ (instanceId),
      function: {
        namespace: /** @type {string} */ (fn.namespace),
        name: /** @type {string} */ (fn.name),
        revision: /** @type {number} */ (fn.revision),
      },
      filename,
      code: Buffer.from(code, "base64"),
      entrypoint: typeof entrypoint === "string" && entrypoint !== "" ? entrypoint : undefined,
      concurrency: typeof concurrency === "number" ? concurrency : defaultConcurrency,
      env: extraEnv,
      digest: typeof digest === "string" ? digest : undefined,
    },
  };
}
