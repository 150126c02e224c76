import { randomBytes } from "node:crypto";
import { subjects as makeSubjects } from "@fizz/events";
import {
  connectNats,
  ensureBus,
  LeaderElection,
  linkedSignal,
  natsConnected,
  retryUntil,
  silentLogger,
  sleep,
  startOpsServer,
  warnWhenSlow,
  type Logger,
  type NatsConnection,
} from "@fizz/kit";
import type { KubeConfig } from "@kubernetes/client-node";
import type { JetStreamClient } from "@nats-io/jetstream";
import type { KubewatcherConfig } from "./config";
import { Publisher } from "./delivery";
import { Discovery } from "./discovery";
import { KubeClient } from "./kube-client";
import { loadClusterConfig } from "./kube-config-source";
import { createMetrics } from "./metrics";
import { WatchStateStore } from "./state-store";
import { syncTriggers, type TriggerSync } from "./trigger-sync";
import { WatchManager, type TriggerStatus } from "./watch-manager";

export { loadConfig, type KubewatcherConfig } from "./config";
export type { TriggerStatus } from "./watch-manager";

export interface Kubewatcher {
  opsPort: number;
  /** This replica's id (the value of the leader key while it leads). */
  id: string;
  /** Resolves once NATS, JetStream and the KV buckets are set up and the triggers were listed. */
  synced: Promise<void>;
  isLeader(): boolean;
  /** Per trigger (`<namespace>/<name>`): what its informer is doing, or why it was refused. */
  status(): Record<string, TriggerStatus>;
  stop(): Promise<void>;
}

const KUBE_PROBE_MS = 10_000;

/**
 * The kubewatcher turns Kubernetes watch events into invocations on JetStream, for the watch
 * triggers the registry holds. Every replica follows the triggers; only the leader (kit's LeaderElection)
 * runs the informers (watch-manager.ts, key-watch.ts), so each event is published by one replica,
 * and resume points live in NATS KV so a restart or a failover neither replays nor loses events
 * (README.md states the guarantee). /healthz answers at once; /readyz once NATS is connected and,
 * when there are triggers, the apiserver answers.
 */
export async function start(
  config: KubewatcherConfig,
  deps: { logger?: Logger; kubeConfig?: KubeConfig } = {},
): Promise<Kubewatcher> {
  const logger = deps.logger ?? silentLogger();
  const id = `kubewatcher-${randomBytes(3).toString("hex")}`;
  const abort = new AbortController();
  const signal = abort.signal;
  const subjects = makeSubjects(config.subjectPrefix);
  const client = new KubeClient(deps.kubeConfig ?? (await loadClusterConfig(config)));
  const discovery = new Discovery(client);

  let nc: NatsConnection | undefined;
  let js: JetStreamClient | undefined;
  let sync: TriggerSync | undefined;
  let manager: WatchManager | undefined;
  let leader: LeaderElection | undefined;
  let listed = false;
  let kubeReachable = false;

  const metrics = createMetrics({
    leader: () => manager?.isLeading() ?? false,
    informers: () => manager?.informers() ?? 0,
    triggerStates: () => Object.values(manager?.status() ?? {}).map((s) => s.state),
  });
  const ops = await startOpsServer({
    host: config.host,
    port: config.port,
    checks: {
      nats: () => natsConnected(nc),
      kubernetes: () => !client.configured || (sync?.count() ?? 0) === 0 || kubeReachable,
    },
    metrics: metrics.registry,
  });
  logger.info({ port: ops.port, id }, "kubewatcher ops server listening");
  if (!client.configured) {
    logger.warn(
      "no Kubernetes configured (FIZZ_KUBECONFIG, in-cluster service account, ~/.kube/config): watch triggers will fail until one is",
    );
  }

  const setUp = async (): Promise<void> => {
    nc = await connectNats({ url: config.natsUrl, name: id, logger, signal });
    const conn = nc;
    const bus = await untilDone(logger, "JetStream", signal, async () => {
      const { js } = await ensureBus(conn, subjects);
      return { js, state: await WatchStateStore.open(js, config.bucket) };
    });
    const { state } = bus;
    js = bus.js;
    const publisher = new Publisher({
      js: () => js,
      subjects,
      sender: id,
      logger,
      maxPayload: () => conn.info?.max_payload ?? 1024 * 1024,
      onPublished: (type) => metrics.invocations.inc({ type }),
      onRetry: () => metrics.publishRetries.inc(),
    });
    const m = new WatchManager(
      {
        client,
        discovery,
        state,
        publisher,
        clusterScope: config.clusterScope,
        resolveRetryMs: config.resolveRetryMs,
        logger,
        onResync: () => metrics.resyncs.inc(),
        onKubeReachable: (ok) => (kubeReachable = ok),
      },
      () => listed,
    );
    manager = m;
    sync = syncTriggers({ nc: conn, subjects, sink: m, sender: id, logger, signal });
    const synced = sync.synced.then(() => {
      listed = !signal.aborted;
    });
    const election = new LeaderElection({
      js: bus.js,
      bucket: `${config.bucket}_leader`,
      id,
      ttlMs: config.leaderTtlMs,
      logger,
      name: "kubewatcher",
      // Informers start only once the triggers are known, so an election right at start cannot
      // mistake "not listed yet" for "no triggers".
      onElected: () => void synced.then(() => (signal.aborted ? undefined : m.elected())),
      onDeposed: () => void m.deposed(),
    });
    await untilDone(logger, "the leader bucket", signal, () => election.start());
    leader = election;
    void probeKubernetes();
    await synced;
  };

  const probeKubernetes = async (): Promise<void> => {
    while (!signal.aborted) {
      if (client.configured && (sync?.count() ?? 0) > 0) {
        try {
          const probe = linkedSignal([signal], 5_000); // not AbortSignal.any: see linkedSignal
          await client.get("/version", {}, probe.signal).finally(() => probe.release());
          kubeReachable = true;
        } catch (err) {
          if (kubeReachable) logger.warn({ err: (err as Error).message }, "apiserver unreachable");
          kubeReachable = false;
        }
      }
      await sleep(KUBE_PROBE_MS, signal);
    }
  };

  const ready = setUp();
  const synced = ready.catch((err: unknown) => {
    if (!signal.aborted) logger.error({ err }, "kubewatcher failed to start");
  });

  return {
    opsPort: ops.port,
    id,
    synced,
    isLeader: () => (leader?.isLeader() ?? false) && (manager?.isLeading() ?? false),
    status: () => manager?.status() ?? {},
    async stop() {
      abort.abort();
      await synced;
      // Informers first, so nothing is published after the lock is released; then the lock, so a
      // follower takes over at once instead of waiting for it to expire.
      await manager?.stop();
      await leader?.stop();
      await nc?.drain().catch(() => undefined);
      await ops.close();
    },
  };
}

/** Retries a set-up step with back-off until it succeeds or the service stops (RetryStopped). */
function untilDone<T>(
  logger: Logger,
  what: string,
  signal: AbortSignal,
  step: () => Promise<T>,
): Promise<T> {
  // A peer still coming up is normal at start: quiet unless the wait lasts.
  return retryUntil(step, {
    baseMs: 250,
    maxMs: 5_000,
    signal,
    onRetry: warnWhenSlow(logger, `waiting for ${what}`),
  });
}
