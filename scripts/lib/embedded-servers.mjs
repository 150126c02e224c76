// The NATS and Redis servers `npm start` runs when no URL is given (platform.mjs), each with the
// generated per-service users (nats-config.mjs) and supervised like the services.
import { writeNatsConfig, writeRedisAcl } from "./nats-config.mjs";
import { freePort, portOpen, waitUntil } from "./net-wait.mjs";
import { findBinary } from "./prereqs.mjs";

/**
 * @typedef {(name: string, cmd: string, args: string[], env: NodeJS.ProcessEnv,
 *   o?: { exitWithStdin?: boolean, ready?: () => Promise<boolean> }) => unknown} SpawnChild
 */

/**
 * A server binary `ensureBinaries` (prereqs.mjs) checked for or installed before this runs.
 * @param {string} bin
 * @param {string[]} paths
 * @returns {string}
 */
function requireBinary(bin, paths) {
  const found = findBinary(bin, paths);
  if (found === undefined) throw new Error(`${bin} not found on PATH`);
  return found;
}

/**
 * Starts nats-server in `dir` (its config and JetStream store); resolves with its URL once the port
 * is open.
 * @param {{ spawnChild: SpawnChild, dir: string, passwords: Record<string, string>,
 *   prefix: string | undefined }} o
 * @returns {Promise<string>}
 */
export async function startEmbeddedNats({ spawnChild, dir, passwords, prefix }) {
  const port = await freePort();
  const bin = requireBinary("nats-server", ["/usr/sbin/nats-server", "/usr/bin/nats-server"]);
  const conf = await writeNatsConfig(dir, {
    port,
    storeDir: dir,
    passwords,
    prefix,
  });
  spawnChild("nats", bin, ["-c", conf], process.env, { ready: () => portOpen(port) });
  await waitUntil(() => portOpen(port), 15_000, "nats-server");
  return `nats://127.0.0.1:${port}`;
}

/**
 * Starts redis-server with its data and ACL file in `dir`; resolves with its URL once the port is
 * open.
 * @param {{ spawnChild: SpawnChild, dir: string, passwords: Record<string, string>,
 *   prefix: string | undefined }} o
 * @returns {Promise<string>}
 */
export async function startEmbeddedRedis({ spawnChild, dir, passwords, prefix }) {
  const port = await freePort();
  const acl = await writeRedisAcl(dir, { passwords, prefix });
  const bin = requireBinary("redis-server", ["/usr/bin/redis-server"]);
  // appendonly: what was registered survives a restart of `npm start`.
  const args = [
    "--port",
    String(port),
    "--bind",
    "127.0.0.1",
    "--dir",
    dir,
    "--appendonly",
    "yes",
    // A write is on disk before Redis answers it, so a registry write the client saw succeed
    // survives kill -9 of Redis (and of the machine). everysec may answer before the write()
    // when a background fsync is slow, losing up to 2 s of acknowledged writes.
    "--appendfsync",
    "always",
    "--save",
    "",
    "--loglevel",
    "warning",
    // Per-service users, `default` off: see scripts/lib/nats-config.mjs.
    "--aclfile",
    acl,
  ];
  spawnChild("redis", bin, args, process.env, { ready: () => portOpen(port) });
  await waitUntil(() => portOpen(port), 15_000, "redis-server");
  return `redis://127.0.0.1:${port}`;
}
