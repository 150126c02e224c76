// The key the registry encrypts secret values with at rest (AES-256-GCM), generated on first start
// and kept in the data dir: losing it makes every stored secret unreadable, so it is never
// regenerated while the file exists. Nothing here is ever logged.
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import path from "node:path";
import { writeSecretFile } from "./credentials.mjs";

/**
 * `<dataDir>/secrets.key`: 32 random bytes, base64, one line, owner-only (0600).
 * @param {string} dataDir
 * @returns {string} the file's path (FIZZ_SECRETS_KEY_FILE of the registry)
 */
export function ensureSecretsKeyFile(dataDir) {
  const file = path.join(dataDir, "secrets.key");
  if (!existsSync(file)) writeSecretFile(file, randomBytes(32).toString("base64") + "\n");
  return file;
}
