// @ts-check
/**
 * Secrets and configmaps as files (docs/runtime-contract.md): `<base>/<namespace>/<name>/<key>`,
 * written before the function's code loads, so its top-level code can read them. Values are never
 * logged and never in the environment: a file read is what the function does to see one.
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";

/**
 * Files are 0400. Directories are 0700, not 0500: whoever removes the instance's directory
 * afterwards (a poolkeeper that does not run as root) must be able to unlink the files. Only the
 * instance's own uid can enter them either way. An existing `base` (a Kubernetes emptyDir) is
 * used as it is. Names and keys were validated (validate.mjs): none is `.`, `..` or has a '/'.
 * @param {string} base
 * @param {string} namespace
 * @param {import("./validate.mjs").ConfigData} data
 */
export function writeConfigFiles(base, namespace, data) {
  for (const [name, keys] of Object.entries(data)) {
    const dir = join(base, namespace, name);
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    for (const [key, value] of Object.entries(keys)) {
      writeFileSync(join(dir, key), value, { mode: 0o400, flag: "wx" });
    }
  }
}
