// Each service's environment as the launcher (platform.mjs) starts it: its own NATS and Redis user
// only, the tokens and the secrets key for the registry alone, nothing of Redis for the poolkeeper.
import path from "node:path";
import { ensureSecretsKeyFile } from "./secrets-key.mjs";
import { ROOT } from "./prereqs.mjs";

/**
 * @typedef {object} ServiceEnvContext
 * @property {NodeJS.ProcessEnv} env  what every service gets (URLs, ports, work dir)
 * @property {boolean} embeddedNats  the generated NATS users exist (the launcher started NATS)
 * @property {boolean} embeddedRedis  the same for Redis
 * @property {ReturnType<typeof import("./credentials.mjs").ensureCredentials>} creds
 * @property {string} dataDir
 * @property {(name: string) => string} privateDir  an owner-only directory under dataDir
 * @property {string | undefined} consoleDir  the built web console, if any
 * @property {number} gatewayPort
 * @property {string | undefined} distDir  the services' bundles (undefined: from source)
 * @property {boolean} runtimesDirSet  FIZZ_RUNTIMES_DIR was given
 * @property {Record<string, string> | undefined} extraEnv  the caller's overrides, applied last
 */

/**
 * glibc malloc for the registry (k8s/registry.yaml sets the same). Allocations of 128 KiB and more
 * get a mapping of their own, given back on free. By default glibc raises that threshold to the
 * largest block freed so far: the ESM loader frees the registry's ~1 MB bundle source early, after
 * which start-up's big buffers came from the brk heap and stayed there, freed but not returned
 * (~5 MB more idle RSS than the other services; 64 -> 59 MB measured). A fixed value also turns
 * that adjustment off. The other services load smaller files and measured no change.
 */
export const REGISTRY_MALLOC_ENV = { MALLOC_MMAP_THRESHOLD_: "131072" };

/**
 * @param {string} svc
 * @param {ServiceEnvContext} c
 */
function serviceEnvOf(svc, c) {
  return {
    ...c.env,
    ...(c.embeddedNats ? { FIZZ_NATS_USER: svc, FIZZ_NATS_PASSWORD: c.creds.nats[svc] } : {}),
    ...(c.embeddedRedis && c.creds.redis[svc]
      ? { FIZZ_REDIS_USER: svc, FIZZ_REDIS_PASSWORD: c.creds.redis[svc] }
      : {}),
    ...(svc === "registry"
      ? {
          FIZZ_ADMIN_TOKEN: c.creds.adminToken,
          FIZZ_READ_TOKEN: c.creds.readToken,
          // Secret values at rest are encrypted with this key; only the registry gets it.
          FIZZ_SECRETS_KEY_FILE: ensureSecretsKeyFile(c.dataDir),
          // Archive uploads are spooled here (up to 256 MiB each), not in a shared /tmp.
          FIZZ_REGISTRY_WORKDIR: c.privateDir("registry"),
          ...(c.consoleDir === undefined ? {} : { FIZZ_CONSOLE_DIR: c.consoleDir }),
          // The console's invoke form calls functions through this gateway, and nowhere else.
          FIZZ_GATEWAY_URL: `http://127.0.0.1:${c.gatewayPort}`,
          ...REGISTRY_MALLOC_ENV,
        }
      : {}),
    // Functions' output in the launcher's terminal too (`default/hello | …`), as before logs had
    // their own stream; past the poolkeeper's budget and masked.
    ...(svc === "poolkeeper" ? { FIZZ_LOG_ECHO: "true" } : {}),
    // The poolkeeper finds runtimes/ next to its source file; a bundle lives in dist/.
    ...(svc === "poolkeeper" && c.distDir !== undefined && !c.runtimesDirSet
      ? { FIZZ_RUNTIMES_DIR: path.join(ROOT, "runtimes") }
      : {}),
    ...c.extraEnv,
  };
}

/**
 * The poolkeeper gets no Redis URL or credentials at all: it has no use for them, and a process
 * that runs user code (builds, instances) should hold no key it does not need.
 * @param {string} svc
 * @param {ServiceEnvContext} c
 */
export function serviceEnv(svc, c) {
  /** @type {Record<string, string | undefined>} */
  const e = serviceEnvOf(svc, c);
  if (svc === "poolkeeper")
    for (const k of Object.keys(e)) if (k.startsWith("FIZZ_REDIS_")) delete e[k];
  return e;
}
