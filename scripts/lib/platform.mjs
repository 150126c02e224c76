// Launches the platform as local processes: the embedded NATS and Redis (unless URLs are given)
// and the five services. Used by `npm start` and by the end-to-end tests, so the tests exercise
// exactly what a user runs. Plain JavaScript: it runs before anything is compiled or installed.
import { spawn } from "node:child_process";
import { chmodSync, existsSync, mkdirSync } from "node:fs";
import net from "node:net";
import path from "node:path";
import { ensureConsoleBuilt } from "./console-build.mjs";
import { ensureCredentials, natsUrlWith } from "./credentials.mjs";
import { ensureSecretsKeyFile } from "./secrets-key.mjs";
import { ensureServicesBuilt, SERVICE_NODE_FLAGS, serviceBundle } from "./service-build.mjs";
import { writeNatsConfig, writeRedisAcl } from "./nats-config.mjs";
import { findBinary, ROOT } from "./prereqs.mjs";
import { Supervisor } from "./supervisor.mjs";

const SETPRIV =
  process.platform === "linux" && existsSync("/usr/bin/setpriv") ? "/usr/bin/setpriv" : undefined;

export const SERVICES = ["registry", "scheduler", "poolkeeper", "gateway", "kubewatcher"];

/**
 * @param {string} [host]
 * @returns {Promise<number>}
 */
export function freePort(host = "127.0.0.1") {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once("error", reject);
    srv.listen(0, host, () => {
      const address = srv.address();
      // Listening on a TCP host gives an AddressInfo (a string is a pipe's path).
      if (address === null || typeof address === "string")
        return reject(new Error(`no TCP port from ${host}`));
      srv.close(() => resolve(address.port));
    });
  });
}

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
 * @param {number} port
 * @param {string} [host]
 * @returns {Promise<boolean>}
 */
function portOpen(port, host = "127.0.0.1") {
  return new Promise((resolve) => {
    const s = net.connect({ port, host });
    s.once("connect", () => (s.destroy(), resolve(true)));
    s.once("error", () => resolve(false));
  });
}

/**
 * @param {() => Promise<boolean>} check
 * @param {number} timeoutMs
 * @param {string} what  named in the timeout error
 */
async function waitUntil(check, timeoutMs, what) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check().catch(() => false)) return;
    if (Date.now() > deadline)
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/**
 * @param {string} url  a readiness endpoint
 * @returns {Promise<boolean>}
 */
async function ready(url) {
  const res = await fetch(url, { signal: AbortSignal.timeout(1000) });
  await res.arrayBuffer();
  return res.ok;
}

/**
 * @param {object} opts
 * @param {string} opts.dataDir   where embedded servers keep data and instances their work dirs
 * @param {string=} opts.natsUrl  use this NATS instead of starting one
 * @param {string=} opts.redisUrl use this Redis instead of starting one
 * @param {number=} opts.gatewayPort  default 8080
 * @param {number=} opts.registryPort default 8081
 * @param {Record<string,string>=} opts.env extra environment for every service
 * @param {(name: string, line: string) => void=} opts.onLog  service output (default: inherit)
 * @param {(name: string) => void=} opts.onReady  a service answered its readiness probe for the
 *   first time (once per service, in the order they come up)
 * @param {import("./supervisor.mjs").SupervisorOptions=} opts.supervisor  back-off (initialMs,
 *   maxMs, resetAfterMs) and onExit/onRestart hooks; by default a restart is logged as one
 *   `[supervisor]` line through onLog (or stderr)
 */
export async function launchPlatform(opts) {
  /** @param {string} line */
  const say = (line) =>
    opts.onLog ? opts.onLog("supervisor", line) : console.error(`fizz: ${line}`);
  // Once started, any child that exits is restarted with back-off; the others keep running.
  const supervisor = new Supervisor({
    onExit: ({ name, code, signal, delayMs }) =>
      say(`${name} exited (${code ?? signal}); restarting in ${delayMs} ms`),
    onRestart: ({ name, restarts }) => say(`${name} restarted (restart ${restarts})`),
    ...opts.supervisor,
  });
  /**
   * @param {string} name
   * @param {string} cmd
   * @param {string[]} args
   * @param {NodeJS.ProcessEnv} env
   * @param {{ exitWithStdin?: boolean, ready?: () => Promise<boolean> }} [o]
   */
  const spawnChild = (name, cmd, args, env, { exitWithStdin = false, ready } = {}) =>
    supervisor.add(name, () => spawnOnce(name, cmd, args, env, exitWithStdin), ready);
  /**
   * @param {string} name
   * @param {string} cmd
   * @param {string[]} args
   * @param {NodeJS.ProcessEnv} env
   * @param {boolean} exitWithStdin
   */
  const spawnOnce = (name, cmd, args, env, exitWithStdin) => {
    // nats-server and redis-server do not watch stdin: on Linux, setpriv's parent-death signal
    // stops them when this launcher dies, even by SIGKILL (it survives the exec).
    if (!exitWithStdin && SETPRIV)
      [cmd, args] = [SETPRIV, ["--pdeathsig", "SIGTERM", "--", cmd, ...args]];
    const child = spawn(cmd, args, {
      cwd: ROOT,
      env,
      // Its own process group: a terminal's Ctrl-C (SIGINT to the whole foreground group) reaches
      // only this launcher, which stops the services before the NATS and Redis they drain into.
      // Sent to every process at once, Redis would go first and services would hang on it.
      // Dying with the launcher does not depend on the group (stdin pipe, parent-death signal).
      detached: exitWithStdin || SETPRIV !== undefined,
      // stdin is a pipe the child watches: if this launcher dies, even by SIGKILL, it closes and
      // the services stop, so nothing is left orphaned.
      stdio: [
        exitWithStdin ? "pipe" : "ignore",
        opts.onLog ? "pipe" : "inherit",
        opts.onLog ? "pipe" : "inherit",
      ],
    });
    const onLog = opts.onLog;
    if (onLog) {
      for (const stream of [child.stdout, child.stderr]) {
        let buf = "";
        // Piped above whenever onLog is set.
        stream?.on("data", (/** @type {Buffer} */ d) => {
          buf += d.toString();
          let i;
          while ((i = buf.indexOf("\n")) >= 0) {
            onLog(name, buf.slice(0, i));
            buf = buf.slice(i + 1);
          }
        });
      }
    }
    return child;
  };

  // Services first (they drain), then the servers they talk to.
  const stop = () =>
    supervisor.stop([
      SERVICES,
      supervisor.children.map((c) => c.name).filter((n) => !SERVICES.includes(n)),
    ]);

  try {
    mkdirSync(opts.dataDir, { recursive: true });
    // The web console the registry serves at /console/, rebuilt when its sources changed (never
    // rejects: without esbuild the previous build, or none, is served).
    const consoleBuilt = ensureConsoleBuilt({ warn: say });
    /**
     * @param {string} name
     * @param {string | undefined} fallback
     */
    const setting = (name, fallback) => opts.env?.[name] ?? process.env[name] ?? fallback;
    // The services run from their bundles (service-build.mjs: rebuilt here when a source changed),
    // as in the images: less than half the memory of tsx compiling every module in a loader
    // thread. FIZZ_FROM_SOURCE=1 runs the TypeScript through tsx instead (debugging, a stack
    // trace with source lines without FIZZ_SOURCE_MAPS=1).
    const fromSource = setting("FIZZ_FROM_SOURCE", "") === "1";
    const servicesBuilt = fromSource
      ? Promise.resolve(undefined)
      : ensureServicesBuilt({ log: say });
    // Awaited before the services start; a failed build must not be an unhandled rejection first.
    servicesBuilt.catch(() => undefined);
    // Tokens and passwords: generated once, reused on every start (credentials.mjs).
    const creds = ensureCredentials(opts.dataDir);
    const subjectPrefix = setting("FIZZ_SUBJECT_PREFIX", undefined) || undefined;
    const redisPrefix = setting("FIZZ_REDIS_PREFIX", undefined) || undefined;
    /** @param {string} name */
    const privateDir = (name) => {
      const dir = path.join(opts.dataDir, name);
      mkdirSync(dir, { recursive: true, mode: 0o700 });
      chmodSync(dir, 0o700);
      return dir;
    };
    let natsUrl = opts.natsUrl;
    let redisUrl = opts.redisUrl;
    // Only the servers started here know the generated users; external ones bring their own.
    const embeddedNats = !natsUrl;
    const embeddedRedis = !redisUrl;
    if (!natsUrl) {
      const port = await freePort();
      const dir = privateDir("nats");
      const bin = requireBinary("nats-server", ["/usr/sbin/nats-server", "/usr/bin/nats-server"]);
      const conf = await writeNatsConfig(dir, {
        port,
        storeDir: dir,
        passwords: creds.nats,
        prefix: subjectPrefix,
      });
      spawnChild("nats", bin, ["-c", conf], process.env, { ready: () => portOpen(port) });
      natsUrl = `nats://127.0.0.1:${port}`;
      await waitUntil(() => portOpen(port), 15_000, "nats-server");
    }
    if (!redisUrl) {
      const port = await freePort();
      const dir = privateDir("redis");
      const acl = await writeRedisAcl(dir, { passwords: creds.redis, prefix: redisPrefix });
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
      redisUrl = `redis://127.0.0.1:${port}`;
      await waitUntil(() => portOpen(port), 15_000, "redis-server");
    }

    const ports = {
      gateway: opts.gatewayPort ?? 8080,
      registry: opts.registryPort ?? 8081,
      gatewayOps: await freePort(),
      scheduler: await freePort(),
      poolkeeper: await freePort(),
      kubewatcher: await freePort(),
    };
    const env = {
      ...process.env,
      FIZZ_NATS_URL: natsUrl,
      FIZZ_REDIS_URL: redisUrl,
      FIZZ_GATEWAY_PORT: String(ports.gateway),
      FIZZ_GATEWAY_OPS_PORT: String(ports.gatewayOps),
      FIZZ_REGISTRY_PORT: String(ports.registry),
      FIZZ_SCHEDULER_PORT: String(ports.scheduler),
      FIZZ_POOLKEEPER_PORT: String(ports.poolkeeper),
      FIZZ_KUBEWATCHER_PORT: String(ports.kubewatcher),
      FIZZ_WORKDIR: path.join(opts.dataDir, "work"),
      FIZZ_PARENT_STDIN: "1",
      ...opts.env,
    };
    /** @type {Record<string, string>} */
    const readyz = {
      registry: `http://127.0.0.1:${ports.registry}/readyz`,
      gateway: `http://127.0.0.1:${ports.gatewayOps}/readyz`,
      scheduler: `http://127.0.0.1:${ports.scheduler}/readyz`,
      poolkeeper: `http://127.0.0.1:${ports.poolkeeper}/readyz`,
      kubewatcher: `http://127.0.0.1:${ports.kubewatcher}/readyz`,
    };
    // Started with NATS and Redis above, so a rebuild costs no start-up time of its own.
    const consoleDir = await consoleBuilt;
    const distDir = await servicesBuilt;
    // Source maps cost each service memory (Node parses them at load): only when asked for.
    const nodeFlags = setting("FIZZ_SOURCE_MAPS", "") === "1" ? ["--enable-source-maps"] : [];
    /** @param {string} svc */
    const commandOf = (svc) =>
      distDir === undefined
        ? ["--import", "tsx", path.join("services", svc, "src", "main.ts")]
        : [...(SERVICE_NODE_FLAGS[svc] ?? []), ...nodeFlags, serviceBundle(svc, distDir)];
    // Each service gets its own NATS and Redis user only, and only the registry the tokens.
    /** @param {string} svc */
    const readyzOf = (svc) => {
      const url = readyz[svc];
      if (url === undefined) throw new Error(`no readiness endpoint for ${svc}`);
      return url;
    };
    /** @param {string} svc */
    const serviceEnv = (svc) => ({
      ...env,
      ...(embeddedNats ? { FIZZ_NATS_USER: svc, FIZZ_NATS_PASSWORD: creds.nats[svc] } : {}),
      ...(embeddedRedis && creds.redis[svc]
        ? { FIZZ_REDIS_USER: svc, FIZZ_REDIS_PASSWORD: creds.redis[svc] }
        : {}),
      ...(svc === "registry"
        ? {
            FIZZ_ADMIN_TOKEN: creds.adminToken,
            FIZZ_READ_TOKEN: creds.readToken,
            // Secret values at rest are encrypted with this key; only the registry gets it.
            FIZZ_SECRETS_KEY_FILE: ensureSecretsKeyFile(opts.dataDir),
            // Archive uploads are spooled here (up to 256 MiB each), not in a shared /tmp.
            FIZZ_REGISTRY_WORKDIR: privateDir("registry"),
            ...(consoleDir === undefined ? {} : { FIZZ_CONSOLE_DIR: consoleDir }),
            // The console's invoke form calls functions through this gateway, and nowhere else.
            FIZZ_GATEWAY_URL: `http://127.0.0.1:${ports.gateway}`,
          }
        : {}),
      // Functions' output in the launcher's terminal too (`default/hello | …`), as before logs had
      // their own stream; past the poolkeeper's budget and masked.
      ...(svc === "poolkeeper" ? { FIZZ_LOG_ECHO: "true" } : {}),
      // The poolkeeper finds runtimes/ next to its source file; a bundle lives in dist/.
      ...(svc === "poolkeeper" && distDir !== undefined && !setting("FIZZ_RUNTIMES_DIR", "")
        ? { FIZZ_RUNTIMES_DIR: path.join(ROOT, "runtimes") }
        : {}),
      ...opts.env,
    });
    /**
     * The poolkeeper gets no Redis URL or credentials at all: it has no use for them, and a process
     * that runs user code (builds, instances) should hold no key it does not need.
     * @param {string} svc
     */
    const envOf = (svc) => {
      /** @type {Record<string, string | undefined>} */
      const e = serviceEnv(svc);
      if (svc === "poolkeeper")
        for (const k of Object.keys(e)) if (k.startsWith("FIZZ_REDIS_")) delete e[k];
      return e;
    };
    for (const svc of SERVICES) {
      spawnChild(svc, process.execPath, commandOf(svc), envOf(svc), {
        exitWithStdin: true,
        ready: () => ready(readyzOf(svc)),
      });
    }
    const exited = new Promise((_, reject) => {
      for (const { name, child } of supervisor.children) {
        child.once("exit", (code, sig) =>
          reject(new Error(`${name} exited (${code ?? sig}) while starting`)),
        );
      }
    });
    exited.catch(() => undefined);
    await Promise.race([
      Promise.all(
        Object.entries(readyz).map(async ([n, u]) => {
          await waitUntil(() => ready(u), 60_000, `${n} at ${u}`);
          opts.onReady?.(n);
        }),
      ),
      exited,
    ]);
    supervisor.arm();
    return {
      /** Without credentials: what to print, and what an attacker without them would try. */
      natsUrl,
      redisUrl,
      /** `nats://app:<password>@host:port`, the application user (undefined for external NATS). */
      appNatsUrl: embeddedNats ? natsUrlWith(natsUrl, "app", creds.nats.app ?? "") : undefined,
      /** Everything in credentials.json (tokens and per-user passwords). */
      credentials: creds,
      // What the registry was given: opts.env may override the generated tokens.
      adminToken: opts.env?.FIZZ_ADMIN_TOKEN ?? creds.adminToken,
      readToken: opts.env?.FIZZ_READ_TOKEN ?? creds.readToken,
      ports,
      gatewayUrl: `http://127.0.0.1:${ports.gateway}`,
      registryUrl: `http://127.0.0.1:${ports.registry}`,
      /** [{ name, child }], each name's current process. */
      get children() {
        return supervisor.children;
      },
      /** SIGKILLs a service or server by name (`nats`, `redis`, a service) as a crash would. */
      /**
       * @param {string} name
       * @param {NodeJS.Signals} [signal]
       */
      kill: (name, signal) => supervisor.kill(name, signal),
      /** Resolves when `name` has restarted (after the count `after`, default now) and is ready. */
      /**
       * @param {string} name
       * @param {number} [after]
       * @param {number} [timeoutMs]
       */
      restarted: (name, after, timeoutMs) => supervisor.restarted(name, after, timeoutMs),
      /** @param {string} name */
      restarts: (name) => supervisor.restarts(name),
      stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}
