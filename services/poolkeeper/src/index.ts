import { randomBytes } from "node:crypto";
import path from "node:path";
import { Codecs, FizzError, subjects } from "@fizz/events";
import {
  connectNats,
  createLogger,
  natsConnected,
  outsideScope,
  serve,
  startOpsServer,
  type Logger,
  type NatsConnection,
  type OpsServer,
  type Subscription,
} from "@fizz/kit";
import type { Backend } from "./backend";
import { functionSecretNames, recordAdoptedSecrets } from "./adopted-secrets";
import { createBuildRunner, startBuilds } from "./build/index";
import type { PoolkeeperConfig } from "./config";
import { syncEnvironments } from "./environments";
import {
  layeredConfigResolver,
  registryConfigLookup,
  registryConfigResolver,
} from "./function-config";
import { createList, createRetire, instancePublisher, onDied } from "./handlers";
import { startFunctionLogs } from "./logs/index";
import { createMetrics, forgetDeletedFunctions } from "./metrics";
import { Pool } from "./pool";
import { ProcessBackend, type ProcessBackendOptions } from "./process-backend";
import { toInstance } from "./instances";
import { createSpecializer } from "./specialize";
import { lazyArchiveStore } from "./store";
import { ArchiveCache, DEFAULT_ARCHIVE_ENTRY_BYTES } from "./archive-cache";
import { instanceAgent, type InstanceAgent } from "./instance-http";

export type { PoolkeeperConfig } from "./config";
export { loadConfig } from "./config";
export type { Backend, BackendInstance, ExitInfo } from "./backend";
export { Pool } from "./pool";
export { ProcessBackend } from "./process-backend";

export interface PoolkeeperDeps {
  logger?: Logger;
  /** Replaces the backend named by the config (tests). */
  backend?: Backend;
  /** Aborts a start that is still waiting for NATS. */
  signal?: AbortSignal;
}

export interface Poolkeeper {
  /** The ops server's port (/healthz, /readyz, /metrics). */
  port: number;
  /** `poolkeeper-<id>`, the envelope sender. */
  sender: string;
  pool: Pool;
  backend: Backend;
  /** Resolves after the first environment listing from the registry. */
  synced: Promise<void>;
  stop(): Promise<void>;
}

/** How often environments the backend could not run are checked again (a runtime installed since). */
const RECHECK_UNSUPPORTED_MS = 30_000;

/** How long stop() lets in-flight requests finish before it kills the instances under them. */
const DRAIN_MS = 5_000;

export async function start(
  config: PoolkeeperConfig,
  deps: PoolkeeperDeps = {},
): Promise<Poolkeeper> {
  const logger = deps.logger ?? createLogger("poolkeeper", config.logLevel);
  const sender = `poolkeeper-${randomBytes(3).toString("hex")}`;
  const s = subjects(config.subjectPrefix);
  const abort = new AbortController();
  deps.signal?.addEventListener("abort", () => abort.abort(), { once: true });

  // Filled in as start() proceeds; the ops server reads them from the first moment.
  const live: { nc?: NatsConnection; pool?: Pool; backend?: Backend } = {};
  const metrics = createMetrics(
    () => live.pool?.counts() ?? { starting: 0, warm: 0, specializing: 0, specialized: 0 },
    config.metricsMaxFunctions,
  );
  // Up first, so /healthz answers while NATS (or the Kubernetes API) is still being waited for.
  const ops: OpsServer = await startOpsServer({
    host: config.host,
    port: config.port,
    checks: {
      // NATS carries everything the poolkeeper reads: the registry, code and archives (Object Store).
      nats: () => natsConnected(live.nc),
      // The pod watch: without it the pool cannot see its instances.
      ...(config.backend === "kubernetes"
        ? { kubernetes: () => (live.backend ? (live.backend.connected?.() ?? true) : false) }
        : {}),
    },
    metrics: metrics.registry,
  });
  let natsConn: NatsConnection;
  try {
    natsConn = await connectNats({
      url: config.natsUrl,
      name: sender,
      logger,
      signal: abort.signal,
    });
  } catch (err) {
    await ops.close();
    throw err;
  }
  live.nc = natsConn;
  const agent = instanceAgent();
  // Before the backend (its output gates) and the pool (its exit listener must run first).
  const logs = startFunctionLogs({
    nc: natsConn,
    subjects: s,
    sender,
    config: config.logs,
    natsUrl: config.natsUrl,
    registry: metrics.registry,
    tracked: (id) => live.pool?.get(id),
    logger,
    signal: abort.signal,
  });
  const backend =
    deps.backend ??
    (await createBackend(config, agent, logger, logs.capture.gate.bind(logs.capture)));
  logs.capture.attach(backend);
  live.backend = backend;
  const registryRead = {
    nc: natsConn,
    subjects: s,
    sender,
    timeoutMs: Math.min(5_000, config.specializeTimeoutMs),
  };
  // Whatever it returns is recorded for masking before the specializer (or adoption) sees it.
  const readConfig = logs.book.watch(
    backend.readConfig
      ? layeredConfigResolver(registryConfigLookup(registryRead), backend.readConfig.bind(backend))
      : registryConfigResolver(registryRead),
  );
  const announce = instancePublisher(natsConn, s, sender);
  const thePool = new Pool({
    backend,
    logger,
    maxFailures: config.maxSpawnFailures,
    cooldownMs: config.failureCooldownMs,
    onReady: (t) => announce("ready", toInstance(t, backend.kind)),
    onDied: onDied(announce, backend, logger, (t, text) =>
      logs.capture.mask(t.instance, t.function, text),
    ),
    onSpawned: (seconds, ok) =>
      metrics.spawnSeconds.observe({ outcome: ok ? "ok" : "failed" }, seconds),
    spawnConcurrency: config.spawnConcurrency,
    spawnQueueTimeoutMs: config.spawnQueueTimeoutMs,
    refillAfterTakeMs: config.refillAfterTakeMs,
  });
  live.pool = thePool;
  metrics.spawnQueue = () => thePool.spawnQueue();
  metrics.instances = () => thePool.list();
  const recheck = setInterval(() => thePool.recheckUnsupported(), RECHECK_UNSUPPORTED_MS);
  recheck.unref();
  // Instances that outlived the last poolkeeper are found before any pool is filled, so none is
  // started twice; until then the poolkeeper serves nothing (it has nothing to serve with).
  if (backend.start) {
    const adopted = await backend.start(abort.signal);
    if (abort.signal.aborted) {
      agent.destroy();
      await Promise.allSettled([backend.close(), natsConn.close(), ops.close()]);
      throw new FizzError("UNAVAILABLE", "stopped while listing the backend's instances");
    }
    thePool.adopt(adopted);
    // Their function's secrets are read as a specialization would, so their output is masked.
    backend.adoptedReady?.(
      recordAdoptedSecrets({
        adopted,
        secretNames: functionSecretNames(registryRead),
        readConfig,
        logger,
        signal: abort.signal,
      }),
    );
  }

  const envSync = syncEnvironments({
    nc: natsConn,
    subjects: s,
    pool: thePool,
    sender,
    logger,
    signal: abort.signal,
  });
  // Every pool has claimed what it could during the listing; the rest belongs to no environment.
  void envSync.synced.then(() => {
    if (!abort.signal.aborted) backend.releaseUnclaimed?.();
  });
  const archives = lazyArchiveStore(natsConn);
  const specialize = createSpecializer({
    pool: thePool,
    // Package archives from local disk after the first read (the Object Store every time was
    // ~110 ms of a Go cold start); single-file code has its own in-memory cache.
    store: new ArchiveCache(archives, {
      dir: path.join(config.workDir, "archive-cache"),
      maxBytes: config.archiveCacheBytes,
      maxEntryBytes: DEFAULT_ARCHIVE_ENTRY_BYTES,
      logger: logger.child({ component: "archive-cache" }),
    }),
    readConfig,
    lookupEnvironment: (ref) => envSync.lookup(ref),
    agent,
    timeoutMs: config.specializeTimeoutMs,
    backendKind: backend.kind,
    metrics,
    // A load failure's message quotes the function: secret values in it are masked.
    logger: logs.maskedLogger(logger),
    // After the handler returns, the reply is written within the same microtask run; setImmediate
    // runs after that, so a spawn (which blocks the loop for a fork) never delays a reply.
    // Refills outlive the request: outside its trace scope (their instances' lines carry none).
    afterReply: (fn) => setImmediate(() => outsideScope(fn)),
    onSpecialized: (instance) => {
      announce("specialized", instance);
      backend.recordSpecialized?.(instance);
    },
    functionLogs: logs.capture,
  });

  const inflight = new Set<Promise<unknown>>();
  const tracked =
    <A, R>(handler: (a: A) => Promise<R>) =>
    (a: A): Promise<R> => {
      const p = handler(a);
      inflight.add(p);
      void p.then(
        () => inflight.delete(p),
        () => inflight.delete(p),
      );
      return p;
    };
  const serveOpts = { sender, logger, queue: "poolkeeper" };
  const subs: Subscription[] = [
    serve(
      natsConn,
      s.poolkeeperSpecialize,
      Codecs.poolkeeperSpecialize,
      tracked(specialize),
      serveOpts,
    ),
    serve(
      natsConn,
      s.poolkeeperRetire,
      Codecs.poolkeeperRetire,
      tracked(createRetire(thePool, backend, announce, logger)),
      serveOpts,
    ),
    serve(
      natsConn,
      s.poolkeeperList,
      Codecs.poolkeeperList,
      createList(thePool, backend),
      serveOpts,
    ),
    forgetDeletedFunctions(natsConn, s, metrics, logger),
  ];
  // A build takes a uid of the instances' range; the ones a dead poolkeeper left are held first.
  if (backend instanceof ProcessBackend) await backend.leftoversHeld();
  const builds = await startBuilds({
    nc: natsConn,
    subjects: s,
    sender,
    logger,
    concurrency: config.build.concurrency,
    dir: config.build.dir,
    runner: createBuildRunner(config, logger),
    lookupEnvironment: (ref) => envSync.lookup(ref),
  });
  logger.info({ port: ops.port, backend: backend.kind, sender }, "poolkeeper started");
  // The archive store opened now, not in the first cold start (its JetStream requests to the
  // platform's NATS, the client's code run once): in the background, so start-up and readiness do
  // not wait for it; a failed open is tried again at the first use, as before.
  void archives.open().then((ok) => logger.debug({ ok }, "archive store opened ahead"));

  let stopping: Promise<void> | undefined;
  const stop = () =>
    (stopping ??= (async () => {
      abort.abort();
      // Builds under way are killed and handed back to the queue for another poolkeeper.
      const buildsStopped = builds.stop();
      clearInterval(recheck);
      thePool.stop();
      envSync.subscription.unsubscribe();
      await Promise.allSettled(subs.map((sub) => sub.drain()));
      await Promise.race([
        Promise.allSettled([...inflight]),
        new Promise((r) => setTimeout(r, DRAIN_MS).unref()),
      ]);
      // The scheduler must stop routing to them before they go; pods stay (and keep serving).
      for (const t of thePool.list()) {
        if (t.state === "specialized" && !backend.instancesOutliveClose)
          announce("retired", toInstance(t, backend.kind), "poolkeeper stopping");
      }
      await backend.close();
      logs.stop();
      await buildsStopped;
      await natsConn
        .drain()
        .catch((err: unknown) => logger.warn({ err: String(err) }, "NATS drain failed"));
      agent.destroy();
      await ops.close();
      logger.info("poolkeeper stopped");
    })());

  return { port: ops.port, sender, pool: thePool, backend, synced: envSync.synced, stop };
}

async function createBackend(
  config: PoolkeeperConfig,
  agent: InstanceAgent,
  logger: Logger,
  outputGate: NonNullable<ProcessBackendOptions["outputGate"]>,
): Promise<Backend> {
  if (config.backend === "kubernetes") {
    // Loaded only for this backend: @kubernetes/client-node costs ~100 MB of RSS, which a laptop
    // running the process backend should not pay.
    const [{ KubeBackend }, { loadKubeConfig }] = await Promise.all([
      import("./kube-backend"),
      import("@fizz/kit/kube"),
    ]);
    const k = config.kubernetes;
    return new KubeBackend({
      kubeConfig: loadKubeConfig(k),
      namespace: k.namespace,
      resources: k.resources,
      imagePullPolicy: k.imagePullPolicy,
      runAsUser: k.runAsUser,
      startTimeoutMs: k.startTimeoutMs,
      healthTimeoutMs: config.spawnTimeoutMs,
      killGraceMs: config.killGraceMs,
      agent,
      logger,
    });
  }
  return new ProcessBackend({
    workDir: config.workDir,
    // Read before any build starts: the backend is made before startBuilds below.
    buildsDir: config.build.dir,
    runtimesDir: config.runtimesDir,
    python: config.python,
    interpreters: config.interpreters,
    spawnTimeoutMs: config.spawnTimeoutMs,
    killGraceMs: config.killGraceMs,
    baseEnv: config.instanceEnv,
    isolation: config.isolation,
    allowEnvCommand: config.allowEnvCommand,
    agent,
    logger,
    outputGate,
  });
}
