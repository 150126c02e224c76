// @ts-check
/**
 * POST /v2/specialize, archive form (docs/runtime-contract.md): a line of JSON, then a canonical
 * tar.gz that is extracted into <workdir>/fn while it streams in. Its digest is checked before
 * anything in it is loaded; a mismatch or an unsafe archive removes what was written and leaves
 * the instance warm. Loaded only when such a request comes (or preloaded while warm).
 */
import { rmSync } from "node:fs";
import { join } from "node:path";
import { ArchiveUnsafe, readJsonLine, receiveArchive } from "./archive.mjs";
import { sendError, sendHttpError } from "./http.mjs";
import { loadPackage } from "./package-loader.mjs";
import {
  DEFAULT_CONCURRENCY,
  activate,
  alreadySpecialized,
  misdirected,
  workdirOf,
} from "./specialize.mjs";
import { validateArchiveSpecialize } from "./validate.mjs";

/** @typedef {import("node:http").IncomingMessage} Req */
/** @typedef {import("node:http").ServerResponse} Res */
/** @typedef {import("./specialize.mjs").Instance} Instance */
/** @typedef {import("./specialize.mjs").Config} Config */

/** The JSON line carries secrets and configmaps too, but never the code. */
const MAX_JSON_LINE_BYTES = 4 * 1024 * 1024;

/**
 * Called with the token checked and the instance warm.
 * @param {Req} req
 * @param {Res} res
 * @param {Instance} instance
 * @param {Config} config
 */
export async function specializeArchive(req, res, instance, config) {
  let head;
  try {
    head = await readJsonLine(req, MAX_JSON_LINE_BYTES);
  } catch (err) {
    return sendHttpError(res, err);
  }
  // Every answer before the archive is read leaves it unread: the connection cannot be reused.
  const refuse = () => res.setHeader("connection", "close");
  let input;
  try {
    input = JSON.parse(head.line.toString("utf8"));
  } catch {
    refuse();
    const message = "body: the first line must be JSON";
    return sendError(res, 400, "VALIDATION_FAILED", message, { field: "body" });
  }
  const checked = validateArchiveSpecialize(input, DEFAULT_CONCURRENCY);
  if (!checked.ok) {
    refuse();
    return sendError(res, 400, "VALIDATION_FAILED", checked.message, { field: checked.field });
  }
  const spec = checked.value;
  if (misdirected(res, spec, config)) return refuse();
  if (instance.state !== "warm") {
    refuse();
    return alreadySpecialized(res, instance);
  }

  instance.state = "specializing";
  const workdir = workdirOf(res, instance, config);
  if (workdir === undefined) return refuse();
  const dir = join(workdir, "fn");
  /** @param {() => void} answer */
  const backToWarm = (answer) => {
    rmSync(dir, { recursive: true, force: true });
    instance.state = "warm";
    answer();
  };
  let received;
  try {
    const limits = { maxBytes: config.maxPackageBytes, maxEntries: config.maxPackageEntries };
    received = await receiveArchive(req, head.rest, dir, limits);
  } catch (err) {
    if (/** @type {NodeJS.ErrnoException} */ (err).code === "EEXIST") {
      // Not ours to remove: something was extracted here before.
      instance.state = "warm";
      refuse();
      const message =
        "this instance's fn/ directory already exists; an instance is specialized once";
      return sendError(res, 409, "ALREADY_SPECIALIZED", message);
    }
    return backToWarm(() => sendHttpError(res, err));
  }
  const { digest, refusal, files } = received;
  if (digest !== spec.digest) {
    const message = `archive: hashes to ${digest}, not ${spec.digest}; not loaded`;
    return backToWarm(() => sendError(res, 400, "DIGEST_MISMATCH", message, { field: "digest" }));
  }
  if (refusal instanceof ArchiveUnsafe) {
    return backToWarm(() =>
      sendError(res, 400, "ARCHIVE_UNSAFE", refusal.message, { field: "archive" }),
    );
  }
  if (refusal) {
    config.log(`[fizz] specialize failed: ${refusal.message}`);
    const message = `specialize failed: ${refusal.message}`;
    return backToWarm(() => sendError(res, 500, "INTERNAL", message, { retryable: true }));
  }
  const load = () => {
    // Relative paths in the package (templates, data files) resolve from the package.
    process.chdir(dir);
    return loadPackage({ dir, entrypoint: spec.entrypoint });
  };
  await activate(res, instance, config, { spec, workdir, load, what: `package, ${files} files` });
}
