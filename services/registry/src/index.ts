import http from "node:http";
import { randomBytes } from "node:crypto";
import type { AddressInfo } from "node:net";
import { subjects } from "@fizz/events";
import {
  connectNats,
  connectRedis,
  createLogger,
  natsConnected,
  retryUntil,
  RetryStopped,
  type Logger,
  type NatsConnection,
} from "@fizz/kit";
import { openArchiveStore } from "@fizz/kit/archive-store";
import { UpdateBarrier } from "./barrier";
import { ensureBuildStream, jetStreamBuildQueue } from "./builds";
import { changePublisher, serveRequests, type RequestServer } from "./bus";
import { natsConsoleBus, type ConsoleBus } from "./console-bus";
import { migrateRedisCode } from "./code-migration";
import type { RegistryConfig } from "./config";
import { createApp } from "./http-api";
import { FunctionLogs } from "./logs-http";
import { createMetrics } from "./metrics";
import { Operations, type Change } from "./operations";
import { loadSecretBox, type SecretBox } from "./secret-box";
import { RedisStore } from "./store";
import { knownPersistence } from "./known-fingerprint";

export { loadConfig, type RegistryConfig } from "./config";
export { redisKeys } from "./store";

export interface StartDeps {
  logger?: Logger;
  /** Aborts a start that is still waiting for NATS (SIGTERM during start-up). */
  signal?: AbortSignal;
}

export interface RegistryService {
  /** The bound HTTP port (FIZZ_REGISTRY_PORT=0 picks one). */
  port: number;
  /** `registry-<id>`: the envelope sender and connection name of this replica. */
  sender: string;
  stop(): Promise<void>;
}

const REDACTED_PATHS = [
  "authorization",
  "headers.authorization",
  "req.headers.authorization",
  "*.headers.authorization",
  "adminToken",
  "readToken",
  "*.adminToken",
  "*.readToken",
  // Secret values: no code path logs a request body or a secret's data; defence in depth.
  "body",
  "*.body",
  "data",
  "*.data",
  "spec.data",
  "*.spec.data",
  "secretData",
  "*.secretData",
];
/** Room for the JSON around the base64 code in one create/patch body. */
const BODY_OVERHEAD_BYTES = 64 * 1024;
/** In-flight HTTP requests get this long to finish on stop before their connections are cut. */
const HTTP_DRAIN_MS = 5000;

/**
 * Starts the registry. The HTTP server comes up first so /healthz answers (and /readyz says why
 * it is not ready) while NATS and Redis are still being waited for; API requests answer 503 until
 * NATS is connected, and store calls answer 503 while Redis is not.
 */
export async function start(
  config: RegistryConfig,
  deps: StartDeps = {},
): Promise<RegistryService> {
  const sender = `registry-${randomBytes(4).toString("hex")}`;
  // No code path logs request headers; the redaction is there so a future one cannot leak a token.
  const logger = (deps.logger ?? createLogger("registry", config.logLevel)).child(
    { sender },
    { redact: { paths: REDACTED_PATHS, censor: "[redacted]" } },
  );
  const s = subjects(config.subjectPrefix);
  // Before anything listens: a key file that is set but unreadable must stop the start.
  const secrets: SecretBox | undefined =
    config.secretsKeyFile === undefined
      ? undefined
      : await loadSecretBox(config.secretsKeyFile, (msg) => logger.warn(msg));
  if (config.secretsKeyFile === undefined)
    logger.info("FIZZ_SECRETS_KEY_FILE is not set: secrets cannot be created on this registry");
  // Not awaited: the code is hashed while the registry connects; the first listing waits for it.
  const persistKnown = knownPersistence(config, secrets !== undefined, logger);
  const metrics = createMetrics();
  const redis = connectRedis({ url: config.redisUrl, logger, name: sender });
  const store = new RedisStore({
    url: config.redisUrl,
    prefix: config.redisPrefix,
    client: redis,
    name: sender,
    logger,
    onRetry: () => metrics.txRetries.inc(),
    persistKnown,
  });
  let nc: NatsConnection | undefined;
  let ops: Operations | undefined;
  let consoleBus: ConsoleBus | undefined;
  let startupDone = false;
  const logs = new FunctionLogs({ nc: () => nc, subjects: s, config, logger });
  const app = createApp({
    ops: () => ops,
    checks: {
      nats: () => natsConnected(nc),
      redis: () => store.ready(),
      // FIZZ_BUILDS ensured, Redis-era code migrated, pending builds asked for again.
      startup: () => startupDone,
    },
    metrics,
    logger,
    // Secrets and configmaps (CONFIG_MAX_BYTES) fit under the default code limit.
    bodyLimitBytes: Math.ceil(config.codeMaxBytes / 3) * 4 + BODY_OVERHEAD_BYTES,
    auth: config,
    workDir: config.workDir,
    archiveMaxBytes: config.archiveMaxBytes,
    listBounds: { pageBytes: config.listPageMaxBytes, allBytes: config.listAllMaxBytes },
    logs,
    console: {
      dir: config.consoleDir,
      bus: () => consoleBus,
      pageBytes: config.listPageMaxBytes,
      invoke:
        config.gatewayUrl === undefined
          ? undefined
          : { gatewayUrl: config.gatewayUrl, timeoutMs: config.consoleInvokeTimeoutMs },
    },
  });
  const server = http.createServer(app);
  const closeStore = async () => {
    await store.close();
    await redis.quit().catch(() => redis.disconnect());
  };
  try {
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(config.port, config.host, () => resolve());
    });
  } catch (err) {
    await closeStore();
    throw err;
  }
  const port = (server.address() as AddressInfo).port;
  logger.info(
    { host: config.host, port, readToken: config.readToken !== undefined },
    "registry listening",
  );
  if (config.authDisabled)
    logger.warn(
      "FIZZ_AUTH_DISABLED=true: THE REGISTRY ACCEPTS ANYONE. Anyone who can reach this port can " +
        "create functions and run code. This setting is for tests only.",
    );

  let requests: RequestServer;
  let barrier: UpdateBarrier | undefined;
  try {
    nc = await connectNats({
      url: config.natsUrl,
      name: sender,
      logger,
      ...(deps.signal ? { signal: deps.signal } : {}),
    });
    barrier = new UpdateBarrier({
      nc,
      subjects: s,
      sender,
      logger,
      timeoutMs: config.syncTimeoutMs,
      onResult: (result) => metrics.barriers.inc({ result }),
    });
    barrier.start();
    const liveGateways = barrier;
    consoleBus = natsConsoleBus({
      nc,
      subjects: s,
      sender,
      logger,
      liveGateways: () => liveGateways.live(),
    });
    const archives = await openArchiveStore(nc);
    ops = new Operations({
      store,
      archives,
      secrets,
      builds: jetStreamBuildQueue(nc, s, sender),
      logger,
      backend: config.backend,
      codeMaxBytes: config.codeMaxBytes,
      subjectPrefix: config.subjectPrefix,
      watchClusterScope: config.watchClusterScope,
      allowEnvCommand: config.allowEnvCommand,
      onChange: afterCommit(
        changePublisher(nc, s, { sender, logger, published: metrics.published }),
        barrier,
      ),
    });
    requests = serveRequests(nc, s, ops, { sender, logger });
  } catch (err) {
    barrier?.stop();
    await closeServer(server);
    await nc?.close();
    await closeStore();
    throw err;
  }

  const stopStartup = new AbortController();
  const startup = runStartup(nc, ops, store, s, logger, stopStartup.signal).then(
    () => {
      startupDone = true;
    },
    (err: unknown) => {
      if (!(err instanceof RetryStopped)) logger.error({ err }, "start-up tasks failed");
    },
  );
  let stopped: Promise<void> | undefined;
  return {
    port,
    sender,
    stop: () =>
      (stopped ??= (async () => {
        logger.info("draining");
        stopStartup.abort();
        await startup;
        logs.close();
        // New work stops on both fronts; in-flight writes finish (and publish their events)
        // before NATS is drained, and the store closes last.
        await Promise.all([closeServer(server), requests.drain()]);
        barrier?.stop();
        await nc
          ?.drain()
          .catch((err: unknown) =>
            logger.warn({ err: (err as Error).message }, "NATS drain failed"),
          );
        await closeStore();
        logger.info("stopped");
      })()),
  };
}

/**
 * What must happen once per start, retried until it succeeds (Redis may come up after NATS):
 * the build stream exists, Redis-era code blobs are in the Object Store, the route index is
 * built, and packages left
 * pending or running are asked to be built again (a deployment roll-out cut short is finished).
 */
async function runStartup(
  nc: NatsConnection,
  ops: Operations,
  store: RedisStore,
  s: ReturnType<typeof subjects>,
  logger: Logger,
  signal: AbortSignal,
): Promise<void> {
  const log = logger.child({ component: "startup" });
  await retryUntil(
    async () => {
      if (!store.ready()) throw new Error("Redis is not connected yet");
      await ensureBuildStream(nc, s);
      await migrateRedisCode(store, ops.opts.archives, log);
      // Triggers stored before the route index or the index of triggers by function existed
      // join them; until then route checks read every trigger (route-index.ts) and the console
      // listing reads its namespaces' triggers (console-functions.ts).
      await store.buildRouteIndex();
      const { builds, rollouts } = await ops.packages.reconcile();
      if (builds + rollouts > 0) log.info({ builds, rollouts }, "unfinished packages resumed");
    },
    {
      signal,
      baseMs: 100,
      maxMs: 5000,
      onRetry: ({ err, attempt }) => {
        if (attempt > 0)
          log.warn({ err: (err as Error).message }, "start-up tasks failed; retrying");
      },
    },
  );
  // Not awaited: readiness and the start-up tasks never wait for it.
  const t0 = performance.now();
  const onRetry = (err: unknown, attempt: number) =>
    log.warn({ err: (err as Error).message, attempt }, "pre-learning step failed; retrying");
  void store.learnStored(signal, onRetry).then(
    (learnt) =>
      log.info(
        { learnt, checked: store.knownChecks(), ms: Math.round(performance.now() - t0) },
        "stored texts pre-learnt",
      ),
    (err: unknown) => log.warn({ err: (err as Error).message }, "pre-learning stopped"),
  );
}

/**
 * The change event first (so caches converge), then the update barrier; the client's answer once
 * the event is confirmed and the barrier done. The event, the barrier's question and the flush's
 * PING are queued in that order in one tick: one connection keeps the order, so every gateway has
 * the event before the question (it answers once it applied it), and the three leave in one write
 * instead of the question waiting for the PONG.
 */
function afterCommit(
  publish: (change: Change) => () => Promise<void>,
  barrier: UpdateBarrier,
): (change: Change) => Promise<void> {
  return async (change) => {
    const confirm = publish(change);
    const synced = barrier.afterChange(change);
    await Promise.all([confirm(), synced]);
  };
}

function closeServer(server: http.Server): Promise<void> {
  return new Promise((resolve) => {
    if (!server.listening) return resolve();
    const force = setTimeout(() => server.closeAllConnections(), HTTP_DRAIN_MS);
    force.unref();
    server.close(() => {
      clearTimeout(force);
      resolve();
    });
    server.closeIdleConnections();
  });
}
