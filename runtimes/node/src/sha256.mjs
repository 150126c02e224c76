// @ts-check
/**
 * SHA-256 for the single-file specialize: the code's digest check and the token comparison. Why
 * not node:crypto: loading it costs ~5-10 ms of CPU (measured on 2 cores: its public module
 * evaluates the whole crypto layer), and an instance started for a waiting specialize (empty pool)
 * pays it on the request's path, for a few hundred bytes to hash. The hash itself is
 * @noble/hashes (audited, pure JavaScript, bundled into the one-file build), not our own. Inputs
 * over SMALL_INPUT_BYTES still go to node:crypto; the archive form and the rehearsal use it
 * directly. Checked against node:crypto on every length up to three blocks and across the
 * threshold (test/sha256.unit.test.ts).
 */
import { sha256 } from "@noble/hashes/sha2.js";
import { dynamicImport } from "./dynamic-import.mjs";

export { sha256 };

/**
 * Above this, node:crypto: this code runs unoptimized (once per instance), and hashing 4 KiB took
 * about a fifth of loading node:crypto, 16 KiB about as long.
 */
export const SMALL_INPUT_BYTES = 4 * 1024;

/**
 * `sha256:<hex>` of `data`: in JavaScript when small, else through node:crypto (loaded then).
 * @param {Uint8Array} data
 * @returns {Promise<string>}
 */
export async function sha256Digest(data) {
  if (data.length <= SMALL_INPUT_BYTES)
    return `sha256:${Buffer.from(sha256(data)).toString("hex")}`;
  /** @type {typeof import("node:crypto")} */
  const { createHash } = await dynamicImport("node:crypto");
  return `sha256:${createHash("sha256").update(data).digest("hex")}`;
}

/**
 * Whether two strings are equal, in time independent of where they differ and of their lengths:
 * both are hashed first, then all 32 bytes compared (what timingSafeEqual over two digests did).
 * @param {string} expected
 * @param {string} given
 */
export function equalSecrets(expected, given) {
  const a = sha256(Buffer.from(expected, "utf8"));
  const b = sha256(Buffer.from(given, "utf8"));
  let diff = 0;
  for (let i = 0; i < 32; i++) diff |= /** @type {number} */ (a[i]) ^ /** @type {number} */ (b[i]);
  return diff === 0;
}
