/**
 * The HTTP front door: everything between a client's HTTP request and a function instance.
 *
 * Owns the proxy server and its request handler (server.ts, proxy.ts, upstream-errors.ts,
 * response-head.ts, body.ts, headers.ts, http-errors.ts), the route table and its matcher
 * (routes.ts, router.ts), the registry's update barrier (sync.ts), the leases the gateway holds on
 * instances and what happens at the capacity limit (leases.ts, function-leases.ts, capacity.ts,
 * wait-queue.ts), the upstream connections (pools.ts; upstream-client.ts for bodiless requests)
 * and the request metrics (metrics.ts, request-stats.ts), and whose forwarding headers it believes
 * (trusted-proxies.ts).
 *
 * Exports what the composition (../index.ts) wires and what the bus side borrows: the lease
 * manager and its per-function state (bus calls take the same slots as HTTP requests), the route
 * table, and the header and error helpers the invoker shares with the proxy. The front door never
 * imports the bus side; the bus reaches it only through this file.
 */
export { createHandler, listenProxy, type HandlerOptions, type ProxyServer } from "./server";
export type { ProxyContext } from "./proxy";
export { RouteStore, type RouteStoreOptions } from "./routes";
export { DEFAULT_NAMESPACE } from "./router";
export { joinBarrier, type SyncOptions } from "./sync";
export {
  LeaseManager,
  FunctionLeases,
  type LeaseEntry,
  type LeaseManagerOptions,
  type UsageItem,
} from "./leases";
export type { WaitTicket } from "./wait-queue";
export { UpstreamPools } from "./pools";
export { closeUpstreamClients, upstreamClientAvailable } from "./upstream-client";
export {
  upstreamRequest,
  ResponseTooLarge,
  type WholeRequest,
  type WholeResponse,
} from "./upstream-request";
export { GatewayMetrics } from "./metrics";
export { isHopByHop, scanRequestHeaders } from "./headers";
export { parseTrustedProxies, trustedProxies, type TrustedProxies } from "./trusted-proxies";
export { answerTimeout, headersBackstopMs, leaseError, sendError } from "./http-errors";
