import { Codecs, type GatewayStatsReply, type Subjects } from "@fizz/events";
import { listen, serve, type Clock, type Logger, type NatsConnection } from "@fizz/kit";
import type { FunctionStatsTable } from "./function-stats";

/**
 * Answers `gateway.stats` (request-many from the registry; no queue group, every gateway answers
 * for itself) with the last hour of the one function asked about, and forgets a function's
 * numbers when the registry says it was deleted. One function's hour (at most STATS_BUCKETS
 * slices) is far below max_payload, so a reply always fits one NATS message.
 */
export function serveGatewayStats(o: {
  nc: NatsConnection;
  subjects: Subjects;
  id: string;
  table: FunctionStatsTable;
  clock: Pick<Clock, "now">;
  logger: Logger;
}): { stop(): void } {
  const log = o.logger.child({ component: "stats" });
  const sub = serve(
    o.nc,
    o.subjects.gatewayStats,
    Codecs.gatewayStats,
    (req) => {
      const now = o.clock.now();
      const functions: GatewayStatsReply["functions"] = [];
      const s = o.table.get(req.namespace, req.name);
      if (s !== undefined && !s.folded) {
        const buckets = s.history.buckets(now);
        if (buckets.length > 0) functions.push({ namespace: s.namespace, name: s.name, buckets });
      }
      return Promise.resolve({ gateway: o.id, now, functions });
    },
    { sender: o.id, logger: log },
  );
  const deletions = listen(
    o.nc,
    o.subjects.registryChanged("functions"),
    Codecs.registryChanged,
    (ev) => {
      if (ev.op === "deleted") o.table.forget(ev.namespace, ev.name);
    },
    { logger: log },
  );
  return {
    stop() {
      sub.unsubscribe();
      deletions.unsubscribe();
    },
  };
}
