/**
 * Per-function numbers of this gateway: counts and durations by trigger for Prometheus
 * (function-metrics.ts, built at scrape time), and the last hour in STATS_BUCKET_SECONDS slices
 * (stats-ring.ts) that `gateway.stats` answers with (stats-responder.ts) for the web console.
 */
export { FunctionStatsTable, FunctionStats, OTHER, BUS_TRIGGERS } from "./function-stats";
export { serveGatewayStats } from "./stats-responder";
