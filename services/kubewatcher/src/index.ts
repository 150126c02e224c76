import { randomBytes } from "node:crypto";
import {
  connectNats,
  createMetricsRegistry,
  natsConnected,
  silentLogger,
  startOpsServer,
  type Logger,
  type NatsConnection,
} from "@fizz/kit";
import type { KubewatcherConfig } from "./config";

export { loadConfig, type KubewatcherConfig } from "./config";

export interface Kubewatcher {
  opsPort: number;
  stop(): Promise<void>;
}

/**
 * The kubewatcher turns Kubernetes watch events into invocations. In this release it only starts,
 * connects to NATS and reports health; watch triggers arrive with the Kubernetes backend.
 * It answers /healthz at once and /readyz only once NATS is connected, so an orchestrator neither
 * restarts it while it waits for NATS nor counts it as ready before it can publish.
 */
export async function start(
  config: KubewatcherConfig,
  deps: { logger?: Logger } = {},
): Promise<Kubewatcher> {
  const logger = deps.logger ?? silentLogger();
  const sender = `kubewatcher-${randomBytes(3).toString("hex")}`;
  const abort = new AbortController();
  let nc: NatsConnection | undefined;
  const ops = await startOpsServer({
    host: config.host,
    port: config.port,
    checks: { nats: () => natsConnected(nc) },
    metrics: createMetricsRegistry("kubewatcher"),
  });
  logger.info({ port: ops.port, sender }, "kubewatcher ops server listening");
  const connecting = connectNats({
    url: config.natsUrl,
    name: sender,
    logger,
    signal: abort.signal,
  }).then(
    (c) => (nc = c),
    () => undefined,
  );
  return {
    opsPort: ops.port,
    async stop() {
      abort.abort();
      await connecting;
      await nc?.drain().catch(() => undefined);
      await ops.close();
    },
  };
}
