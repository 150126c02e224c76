// The platform's secrets, generated on first start and kept in the data dir so a restart (and the
// data NATS and Redis kept) goes on with the same ones. Nothing here is ever logged.
import { randomBytes } from "node:crypto";
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";

export const NATS_USERS = ["registry", "scheduler", "poolkeeper", "gateway", "kubewatcher", "app"];
// As shared/events/src/permissions.ts REDIS_USERS: only the services that keep state in Redis. The
// poolkeeper reads code and archives from the Object Store and secrets through the registry.
export const REDIS_USERS = ["registry", "scheduler"];

const secret = () => randomBytes(32).toString("base64url");

/**
 * @typedef {object} Credentials
 * @property {string} adminToken
 * @property {string} readToken
 * @property {Record<string, string>} nats   password per NATS user
 * @property {Record<string, string>} redis  password per Redis user
 */

/**
 * Writes a file only its owner can read, even if it existed with looser permissions.
 * @param {string} file
 * @param {string} content
 */
export function writeSecretFile(file, content) {
  writeFileSync(file, content, { mode: 0o600 });
  chmodSync(file, 0o600);
}

/**
 * @param {string} dataDir
 * @returns {Credentials}
 */
export function ensureCredentials(dataDir) {
  mkdirSync(dataDir, { recursive: true });
  // Traversable but not listable: unprivileged instances reach their own work dirs below it.
  chmodSync(dataDir, 0o711);
  const file = path.join(dataDir, "credentials.json");
  /** @type {Partial<Credentials>} */
  let creds = {};
  if (existsSync(file)) {
    try {
      creds = JSON.parse(readFileSync(file, "utf8"));
    } catch (err) {
      throw new Error(
        `${file} is not valid JSON (${err instanceof Error ? err.message : String(err)}); fix or delete it`,
      );
    }
  }
  // Only what is missing is generated: an upgrade that adds a user keeps the old secrets.
  const out = {
    adminToken: creds.adminToken || secret(),
    readToken: creds.readToken || secret(),
    nats: Object.fromEntries(NATS_USERS.map((u) => [u, creds.nats?.[u] || secret()])),
    redis: Object.fromEntries(REDIS_USERS.map((u) => [u, creds.redis?.[u] || secret()])),
  };
  writeSecretFile(file, JSON.stringify(out, null, 2) + "\n");
  writeSecretFile(path.join(dataDir, "admin-token"), out.adminToken + "\n");
  return out;
}

/**
 * `nats://user:password@host:port`, what an application (or a test) connects with.
 * @param {string} url
 * @param {string} user
 * @param {string} password
 * @returns {string}
 */
export function natsUrlWith(url, user, password) {
  const u = new URL(url);
  u.username = encodeURIComponent(user);
  u.password = encodeURIComponent(password);
  return u.toString().replace(/\/$/, "");
}
