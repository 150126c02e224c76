// @ts-check
/**
 * Validation of the POST /v2/specialize request (docs/runtime-contract.md): the JSON body of the
 * single-file form, and the JSON line that heads the archive form. The first problem found is
 * reported with the JSON path of the offending field, so the poolkeeper's log says what to fix.
 */

/**
 * @typedef {{ namespace: string, name: string, revision: number }} FunctionRef
 * @typedef {Record<string, Record<string, Buffer>>} ConfigData name -> key -> bytes
 * @typedef {{
 *   instanceId: string | undefined,
 *   function: FunctionRef,
 *   entrypoint: string | undefined,
 *   concurrency: number,
 *   env: Record<string, string>,
 *   secrets: ConfigData,
 *   configmaps: ConfigData,
 * }} CommonSpec
 * @typedef {CommonSpec & { filename: string, code: Buffer, digest: string | undefined }} SpecializeRequest
 * @typedef {CommonSpec & { digest: string }} ArchiveSpecializeRequest
 * @typedef {{ ok: false, field: string, message: string }} Failure
 * @typedef {{ ok: true, value: SpecializeRequest } | Failure} Validation
 * @typedef {{ ok: true, value: ArchiveSpecializeRequest } | Failure} ArchiveValidation
 */

// A bare file name: no directory part, no leading dot, so writing it can never leave the workdir
// or shadow a dotfile; the extension picks the module system.
const FILENAME = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,254}\.(?:js|mjs|cjs)$/;
// Strict base64 (the registry sends standard, padded base64 without line breaks).
const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;
// `fn` or `file.fn`; the function part must be an identifier.
const ENTRYPOINT = /^(?:[A-Za-z0-9_][A-Za-z0-9_.-]*\.)?[A-Za-z_$][A-Za-z0-9_$]*$/;
// In a package the file part may name a subdirectory: `lib/app.handler`.
const PACKAGE_ENTRYPOINT = /^(?:[A-Za-z0-9_][A-Za-z0-9_./-]*\.)?[A-Za-z_$][A-Za-z0-9_$]*$/;
const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
const DIGEST = /^sha256:[0-9a-f]{64}$/;
// Secret/configmap names and keys become directory and file names: Kubernetes' own character
// sets, which exclude '/', and never '.' or '..'.
const CONFIG_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,252}$/;
const CONFIG_KEY = /^[A-Za-z0-9._-]{1,253}$/;
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
 * @returns {Failure}
 */
function fail(field, message) {
  return { ok: false, field, message: `${field}: ${message}` };
}

/**
 * The single-file form: `filename` and base64 `code` in a JSON body.
 * @param {unknown} body parsed JSON
 * @param {number} defaultConcurrency
 * @returns {Validation}
 */
export function validateSpecialize(body, defaultConcurrency) {
  const common = validateCommon(body, defaultConcurrency, ENTRYPOINT, "'fn' or 'file.fn'");
  if (!common.ok) return common;
  const { filename, code, digest } = /** @type {Record<string, unknown>} */ (body);
  if (typeof filename !== "string" || !FILENAME.test(filename)) {
    return fail("filename", "must be a file name (no directory) ending in .js, .mjs or .cjs");
  }
  if (typeof code !== "string" || !BASE64.test(code)) {
    return fail("code", "must be the file's content in base64");
  }
  if (digest !== undefined && digest !== null) {
    if (typeof digest !== "string" || !DIGEST.test(digest)) {
      return fail("digest", "must be sha256:<64 lowercase hex digits>");
    }
  }
  const value = {
    ...common.value,
    filename,
    code: Buffer.from(code, "base64"),
    digest: typeof digest === "string" ? digest : undefined,
  };
  return { ok: true, value };
}

/**
 * The archive form's JSON line: no `code`, a required `digest` of the tar.gz bytes that follow.
 * @param {unknown} body parsed JSON
 * @param {number} defaultConcurrency
 * @returns {ArchiveValidation}
 */
export function validateArchiveSpecialize(body, defaultConcurrency) {
  const what = "'fn' or 'file.fn' (file may name a subdirectory: 'lib/app.fn')";
  const common = validateCommon(body, defaultConcurrency, PACKAGE_ENTRYPOINT, what);
  if (!common.ok) return common;
  const { code, filename, digest, entrypoint } = /** @type {Record<string, unknown>} */ (body);
  if (code !== undefined) return fail("code", "not allowed: the code is the archive that follows");
  if (filename !== undefined) return fail("filename", "not allowed with an archive");
  if (typeof digest !== "string" || !DIGEST.test(digest)) {
    return fail("digest", "is required: sha256:<64 lowercase hex digits> of the archive");
  }
  if (typeof entrypoint === "string" && entrypoint.includes(".")) {
    const file = entrypoint.slice(0, entrypoint.lastIndexOf("."));
    if (file.split("/").some((segment) => segment === "" || segment === "." || segment === "..")) {
      return fail("entrypoint", "must name a file inside the package");
    }
  }
  return { ok: true, value: { ...common.value, digest } };
}

/**
 * @param {unknown} body
 * @param {number} defaultConcurrency
 * @param {RegExp} entrypointPattern
 * @param {string} entrypointForm
 * @returns {{ ok: true, value: CommonSpec } | Failure}
 */
function validateCommon(body, defaultConcurrency, entrypointPattern, entrypointForm) {
  if (!isObject(body)) return fail("body", "must be a JSON object");

  const { instanceId, function: fn, entrypoint, concurrency, env } = body;
  if (instanceId !== undefined && (typeof instanceId !== "string" || instanceId === "")) {
    return fail("instanceId", "must be a non-empty string");
  }

  if (!isObject(fn)) return fail("function", "must be an object {namespace, name, revision}");
  for (const key of /** @type {const} */ (["namespace", "name"])) {
    if (typeof fn[key] !== "string" || fn[key] === "") {
      return fail(`function.${key}`, "must be a non-empty string");
    }
  }
  // The namespace names a directory under FIZZ_SECRETS_DIR and FIZZ_CONFIGS_DIR.
  if (!CONFIG_NAME.test(/** @type {string} */ (fn.namespace))) {
    return fail("function.namespace", "must be a namespace name");
  }
  if (!Number.isSafeInteger(fn.revision) || /** @type {number} */ (fn.revision) < 0) {
    return fail("function.revision", "must be a non-negative integer");
  }

  if (entrypoint !== undefined && entrypoint !== null && entrypoint !== "") {
    if (typeof entrypoint !== "string" || !entrypointPattern.test(entrypoint)) {
      return fail("entrypoint", `must be ${entrypointForm}`);
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
  const secrets = validateConfigData(body.secrets, "secrets");
  if (!secrets.ok) return secrets;
  const configmaps = validateConfigData(body.configmaps, "configmaps");
  if (!configmaps.ok) return configmaps;

  return {
    ok: true,
    value: {
      instanceId: /** @type {string | undefined} */ (instanceId),
      function: {
        namespace: /** @type {string} */ (fn.namespace),
        name: /** @type {string} */ (fn.name),
        revision: /** @type {number} */ (fn.revision),
      },
      entrypoint: typeof entrypoint === "string" && entrypoint !== "" ? entrypoint : undefined,
      concurrency: typeof concurrency === "number" ? concurrency : defaultConcurrency,
      env: extraEnv,
      secrets: secrets.value,
      configmaps: configmaps.value,
    },
  };
}

/**
 * `{name: {key: base64}}`. Messages name the field, never a value: these are secrets.
 * @param {unknown} data
 * @param {string} field
 * @returns {{ ok: true, value: ConfigData } | Failure}
 */
function validateConfigData(data, field) {
  /** @type {ConfigData} */
  const out = {};
  if (data === undefined || data === null) return { ok: true, value: out };
  if (!isObject(data)) return fail(field, "must be an object {name: {key: base64}}");
  for (const [name, keys] of Object.entries(data)) {
    if (!CONFIG_NAME.test(name)) return fail(`${field}.${name}`, "is not a valid name");
    if (!isObject(keys)) return fail(`${field}.${name}`, "must be an object {key: base64}");
    /** @type {Record<string, Buffer>} */
    const values = {};
    for (const [key, value] of Object.entries(keys)) {
      if (!CONFIG_KEY.test(key) || key === "." || key === "..") {
        return fail(
          `${field}.${name}.${key}`,
          "is not a valid key (letters, digits, '-', '_', '.')",
        );
      }
      if (typeof value !== "string" || !BASE64.test(value)) {
        return fail(`${field}.${name}.${key}`, "must be base64");
      }
      values[key] = Buffer.from(value, "base64");
    }
    out[name] = values;
  }
  return { ok: true, value: out };
}
