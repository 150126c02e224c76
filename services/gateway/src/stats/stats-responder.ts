import { Codecs, type GatewayStatsReply, type Subjects } from "@fizz/events";
import { listen, serve, type Clock, type Logger, type NatsConnection } from "@fizz/kit";
import type { FunctionStatsTable } from "./function-stats";

/** Room kept in a reply for the envelope around the functions. */
const ENVELOPE_BYTES = 4096;

/**
 * Answers `gateway.stats` (request-many from the registry; no queue group, every gateway answers
 * for itself) with the history of one function or of every function it served in the last hour,
 * and forgets a function's numbers when the registry says it was deleted.
 *
 * A reply must fit one NATS message: when every function's hour does not fit max_payload, the
 * busiest functions (most calls in the hour) are kept and the others left out, which the log says.
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
      const one =
        req.namespace !== undefined && req.name !== undefined
          ? o.table.get(req.namespace, req.name)
          : undefined;
      const wanted = req.namespace !== undefined && req.name !== undefined ? [one] : o.table.all();
      for (const s of wanted) {
        if (s === undefined || s.folded) continue;
        const buckets = s.history.buckets(now);
        if (buckets.length > 0) functions.push({ namespace: s.namespace, name: s.name, buckets });
      }
      return Promise.resolve({ gateway: o.id, now, functions: fit(functions, budget(o.nc), log) });
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

function budget(nc: NatsConnection): number {
  return (nc.info?.max_payload ?? 1024 * 1024) - ENVELOPE_BYTES;
}

function fit(
  functions: GatewayStatsReply["functions"],
  limit: number,
  log: Logger,
): GatewayStatsReply["functions"] {
  const sizes = functions.map((f) => JSON.stringify(f).length + 1);
  if (sizes.reduce((a, b) => a + b, 0) <= limit) return functions;
  const calls = (f: GatewayStatsReply["functions"][number]) =>
    f.buckets.reduce((a, b) => a + b.count, 0);
  const order = functions.map((f, i) => ({ f, size: sizes[i]!, calls: calls(f) }));
  order.sort((a, b) => b.calls - a.calls);
  const kept: GatewayStatsReply["functions"] = [];
  let used = 0;
  for (const { f, size } of order) {
    if (used + size > limit) continue;
    kept.push(f);
    used += size;
  }
  log.warn(
    { functions: functions.length, kept: kept.length, maxPayload: limit + ENVELOPE_BYTES },
    "gateway.stats reply cut to fit one NATS message",
  );
  return kept;
}
