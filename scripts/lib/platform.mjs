// Launches the platform as local processes: the embedded NATS and Redis (unless URLs are given)
// and the five services. Used by `npm start` and by the end-to-end tests, so the tests exercise
// exactly what a user runs. Plain JavaScript: it runs before anything is compiled or installed.
import { chmodSync, mkdirSync } from "node:fs";
import path from "node:path";
import { spawnPlatformChild } from "./child-spawn.mjs";
import { ensureConsoleBuilt } from "./console-build.mjs";
import { ensureCredentials, natsUrlWith } from "./credentials.mjs";
import { startEmbeddedNats, startEmbeddedRedis } from "./embedded-servers.mjs";
import { freePort, ready, waitUntil } from "./net-wait.mjs";
import { ensureServicesBuilt, SERVICE_NODE_FLAGS, serviceBundle } from "./service-build.mjs";
import { serviceEnv } from "./service-env.mjs";
import { Supervisor } from "./supervisor.mjs";

export { freePort };

export const SERVICES = ["registry", "scheduler", "poolkeeper", "gateway", "kubewatcher"];

/**
 * @param {object} opts
 * @param {string} opts.dataDir   where embedded servers keep data and instances their work dirs
 * @param {string=} opts.natsUrl  use this NATS instead of starting one
 * @param {string=} opts.redisUrl use this Redis instead of starting one
 * @param {number=} opts.gatewayPort  default 8080
 * @param {number=} opts.registryPort default 8081
 * @param {Record<string,string>=} opts.env extra environment for every service
 * @param {string=} opts.servicesDist  run the services from this build, as it is (never rebuilt):
 *   an A/B of two builds side by side (bench); default: dist/, rebuilt when a source changed
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
  const spawnOnce = (name, cmd, args, env, exitWithStdin) =>
    spawnPlatformChild(name, cmd, args, env, exitWithStdin, onLog);
  // Each child's last lines, named in the error when one exits while starting: a CI log shows its
  // tail, and "gateway exited (1)" alone does not say why.
  /** @type {Map<string, string[]>} */
  const lastLines = new Map();
  const userOnLog = opts.onLog;
  const onLog =
    userOnLog &&
    /** @type {(name: string, line: string) => void} */ (
      (name, line) => {
        const lines = lastLines.get(name) ?? [];
        lines.push(line);
        if (lines.length > 8) lines.shift();
        lastLines.set(name, lines);
        userOnLog(name, line);
      }
    );

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
      : opts.servicesDist !== undefined
        ? Promise.resolve(opts.servicesDist)
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
      natsUrl = await startEmbeddedNats({
        spawnChild,
        dir: privateDir("nats"),
        passwords: creds.nats,
        prefix: subjectPrefix,
      });
    }
    if (!redisUrl) {
      redisUrl = await startEmbeddedRedis({
        spawnChild,
        dir: privateDir("redis"),
        passwords: creds.redis,
        prefix: redisPrefix,
      });
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
    /** @param {string} svc */
    const readyzOf = (svc) => {
      const url = readyz[svc];
      if (url === undefined) throw new Error(`no readiness endpoint for ${svc}`);
      return url;
    };
    // Each service gets its own NATS and Redis user only, and only the registry the tokens.
    /** @type {import("./service-env.mjs").ServiceEnvContext} */
    const envContext = {
      env,
      embeddedNats,
      embeddedRedis,
      creds,
      dataDir: opts.dataDir,
      privateDir,
      consoleDir,
      gatewayPort: ports.gateway,
      distDir,
      runtimesDirSet: Boolean(setting("FIZZ_RUNTIMES_DIR", "")),
      extraEnv: opts.env,
    };
    for (const svc of SERVICES) {
      spawnChild(svc, process.execPath, commandOf(svc), serviceEnv(svc, envContext), {
        exitWithStdin: true,
        ready: () => ready(readyzOf(svc)),
      });
    }
    const exited = new Promise((_, reject) => {
      for (const { name, child } of supervisor.children) {
        child.once("exit", (code, sig) => {
          // Its last output may still be in the pipe: read until it closes, or briefly.
          const fail = () => {
            const tail = (lastLines.get(name) ?? []).map((l) => `\n  [${name}] ${l}`).join("");
            reject(new Error(`${name} exited (${code ?? sig}) while starting${tail}`));
          };
          const timer = setTimeout(fail, 300);
          child.once("close", () => (clearTimeout(timer), fail()));
        });
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
