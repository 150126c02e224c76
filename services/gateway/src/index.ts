/**
 * The gateway, composed: `start(config, deps)` connects to NATS, starts the ops server, and wires
 * the two halves — the HTTP front door (./front-door: proxy, routes, leases, capacity) and the bus
 * side (./bus: invoker, async HTTP, message-queue triggers), which shares the front door's leases
 * so bus calls and HTTP requests draw on the same slots — then reports usage to the scheduler and
 * stops everything in order. Each half's index.ts says what it owns.
 */
import { randomBytes } from "node:crypto";
import type http from "node:http";
import { Codecs, subjects } from "@fizz/events";
import {
  connectNats,
  createLogger,
  createMetricsRegistry,
  handleOps,
  listen,
  natsConnected,
  OutboundGuard,
  publish,
  realClock,
  request,
  startOpsServer,
  type Logger,
  type NatsConnection,
} from "@fizz/kit";
import type { Registry } from "prom-client";
import { startBus } from "./bus/index";
import { FunctionStatsTable, serveGatewayStats } from "./stats/index";
import { localEndpoints, type GatewayConfig } from "./config";
import {
  LeaseManager,
  GatewayMetrics,
  UpstreamPools,
  type ProxyContext,
  RouteStore,
  createHandler,
  listenProxy,
  joinBarrier,
  trustedProxies,
} from "./front-door/index";

export { loadConfig, type GatewayConfig } from "./config";

export interface GatewayDeps {
  logger?: Logger;
  /** A connection the caller owns (not closed by stop()); by default the gateway connects itself. */
  nc?: NatsConnection;
  /** Aborts a start that is still waiting for NATS (SIGTERM during start-up). */
  signal?: AbortSignal;
  metrics?: Registry;
}

export interface Gateway {
  /** The bound proxy port (FIZZ_GATEWAY_PORT=0 picks one). */
  port: number;
  /** The bound ops port (/healthz, /readyz, /metrics). */
  opsPort: number;
  /** `gateway-<id>`: envelope sender and the `gateway` field of lease requests and reports. */
  id: string;
  /** Resolves once the routes are loaded from the registry. */
  ready: Promise<void>;
  /** Resolves once JetStream is set up and the invoker pulls (bus/start-bus.ts). */
  busReady: Promise<void>;
  stop(): Promise<void>;
}

export async function start(config: GatewayConfig, deps: GatewayDeps = {}): Promise<Gateway> {
  const logger = deps.logger ?? createLogger("gateway", config.logLevel);
  const id = `gateway-${randomBytes(4).toString("hex")}`;
  const subj = subjects(config.subjectPrefix);
  const abort = new AbortController();
  deps.signal?.addEventListener("abort", () => abort.abort(), { once: true });
  const registry = deps.metrics ?? createMetricsRegistry("gateway");
  let connected: NatsConnection | undefined = deps.nc;
  let routesLoaded = () => false;
  const checks = { nats: () => natsConnected(connected), routes: () => routesLoaded() };
  // The ops port first: while NATS is awaited, probes see the gateway alive but not ready.
  const opsServer = await startOpsServer({
    host: config.host,
    port: config.opsPort,
    checks,
    metrics: registry,
  });
  let nc: NatsConnection;
  try {
    nc = connected ??= await connectNats({
      url: config.natsUrl,
      name: id,
      logger,
      signal: abort.signal,
    });
  } catch (err) {
    await opsServer.close();
    throw err;
  }

  const metrics = new GatewayMetrics(registry, new FunctionStatsTable(config.metricsMaxFunctions));
  const pools = new UpstreamPools();
  const leases = new LeaseManager({
    gateway: id,
    request: async (req, trace) =>
      (
        await request(nc, subj.schedulerLease, Codecs.schedulerLease, req, {
          sender: id,
          timeoutMs: config.leaseTimeoutMs,
          trace,
        })
      ).lease,
    dispatcher: (address) => pools.get(address),
    queueTimeoutMs: config.queueTimeoutMs,
    queueMax: config.queueMax,
    onLeaseRequest: (outcome) => metrics.leaseRequests.labels(outcome).inc(),
    onQueueRejected: (reason) => metrics.queueRejected.labels(reason).inc(),
  });
  metrics.queued = () => leases.queued();
  metrics.queues = () => leases.all();
  const routes = new RouteStore({ nc, subjects: subj, sender: id, leases, logger });
  routesLoaded = () => routes.loaded;
  const instancesSub = listen(
    nc,
    subj.schedulerInstancesAll,
    Codecs.schedulerInstances,
    (ev) => leases.instancesChanged(ev.namespace, ev.function, ev.revision, ev.removed),
    { logger },
  );

  const report = () => {
    const items = leases.takeReport();
    if (items.length > 0)
      publish(nc, subj.schedulerReport, Codecs.schedulerReport, { gateway: id, items }, id);
  };
  const timer = setInterval(() => {
    report();
    pools.sweep(leases.addressesInUse());
  }, config.reportIntervalMs);
  timer.unref();

  const ctx: ProxyContext = {
    leases,
    metrics,
    logger: logger.child({ component: "proxy" }),
    active: { count: 0 },
  };
  // The public port answers probes only. /metrics names every function with its traffic and
  // errors, so it is served on the ops port alone (which the NetworkPolicy keeps in-cluster).
  const ops = (req: http.IncomingMessage, res: http.ServerResponse) =>
    (req.url ?? "/").split("?")[0] !== "/metrics" && handleOps(req, res, checks, registry);
  // Every URL fetched for a user (X-Callback-Url) goes through this; the gateway's own ports are
  // added once bound.
  const outbound = new OutboundGuard({
    allow: config.outboundAllow,
    platform: [...config.platformAddresses, ...localEndpoints(opsServer.port)],
  });
  const bus = startBus({
    nc,
    subjects: subj,
    id,
    config: config.bus,
    maxBodyBytes: config.maxBodyBytes,
    queueMax: config.queueMax,
    drainMs: config.drainTimeoutMs,
    leases,
    routes,
    registry,
    functionStats: metrics.functions,
    logger,
    outbound,
  });
  const stats = serveGatewayStats({
    nc,
    subjects: subj,
    id,
    table: metrics.functions,
    clock: realClock,
    logger,
  });
  const handler = createHandler({
    ctx,
    router: () => routes.router,
    maxBodyBytes: config.maxBodyBytes,
    bodyIdleTimeoutMs: config.bodyIdleTimeoutMs,
    trustedProxies: trustedProxies(config.trustedProxies),
    ops,
    asyncFunction: bus.handleAsync,
  });

  const server = await listenProxy(handler, config.host, config.port, ctx.active, config, {
    logger,
  });
  for (const e of [`${config.host}:${server.port}`, ...localEndpoints(server.port)])
    outbound.addPlatform(e);
  const ready = routes.start(abort.signal);
  ready.catch((err: unknown) => logger.error({ err }, "route loading failed"));
  const barrier = joinBarrier({
    nc,
    subjects: subj,
    id,
    routes,
    intervalMs: config.presenceIntervalMs,
    logger,
    signal: abort.signal,
    mqTriggers: (req, signal) => bus.syncMqTriggers(req, signal),
  });
  logger.info(
    { host: config.host, port: server.port, opsPort: opsServer.port, id },
    "gateway listening",
  );

  let stopping: Promise<void> | undefined;
  const stop = async () => {
    abort.abort();
    clearInterval(timer);
    // Bus calls drain alongside HTTP requests, on the leases and pools closed below.
    const busStopped = bus.stop();
    await server.drain(config.drainTimeoutMs);
    await busStopped;
    leases.close();
    report(); // the last usage, so the scheduler does not see these instances as idle too early
    barrier.stop();
    stats.stop();
    routes.stop();
    instancesSub.unsubscribe();
    await pools.close(1000);
    await outbound.close();
    await opsServer.close();
    if (!deps.nc) await nc.drain().catch(() => undefined);
    logger.info("gateway stopped");
  };
  return {
    port: server.port,
    opsPort: opsServer.port,
    id,
    ready,
    busReady: bus.ready,
    stop: () => (stopping ??= stop()),
  };
}
