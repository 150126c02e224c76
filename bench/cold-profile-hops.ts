/** The hops of bench/cold-profile.ts's table: the time between spans, which no span covers. */

/** One trace's spans by "service: name" (the first of each name), in their process's clock. */
export type TraceSpans = Map<string, { start: number; end: number }>;

/**
 * The time no span covers. "gap": from one span's edge to another's, both in one process (its
 * clock). "rt": the outer (client) span's duration less the inner (server) span's, in two
 * processes: both NATS hops of a request and its reply, from durations only. Span times of two
 * processes do not line up to the millisecond (measured: a one-way poolkeeper -> scheduler hop
 * came out at -4 ms median), and span starts come at millisecond resolution, so a "gap" is good
 * to about 1 ms and a one-way hop across processes is not given at all.
 */
type Edge = "start" | "end";
const GATEWAY_LEASE = "gateway: gateway.lease";
const LEASE = "scheduler: scheduler.lease";
const JOIN = "scheduler: scheduler.claim.join";
const ASK = "scheduler: scheduler.specialize";
const FINISH = "scheduler: scheduler.claim.finish";
const PK_SERVER = "poolkeeper: fizz.v1.poolkeeper.specialize";
const GAPS: ({ label: string } & (
  | { kind: "gap"; from: string; fromEdge: Edge; to: string; toEdge: Edge }
  | { kind: "rt"; outer: string; inner: string }
))[] = [
  { label: "gateway <-> scheduler (2 NATS hops)", kind: "rt", outer: GATEWAY_LEASE, inner: LEASE },
  {
    label: "scheduler: lease -> claim join",
    kind: "gap",
    from: LEASE,
    fromEdge: "start",
    to: JOIN,
    toEdge: "start",
  },
  {
    label: "scheduler: join end -> ask",
    kind: "gap",
    from: JOIN,
    fromEdge: "end",
    to: ASK,
    toEdge: "start",
  },
  {
    label: "scheduler <-> poolkeeper (2 NATS hops)",
    kind: "rt",
    outer: ASK,
    inner: PK_SERVER,
  },
  {
    label: "poolkeeper: request -> source read",
    kind: "gap",
    from: PK_SERVER,
    fromEdge: "start",
    to: "poolkeeper: poolkeeper.source",
    toEdge: "start",
  },
  {
    label: "poolkeeper: loaded -> reply sent",
    kind: "gap",
    from: "poolkeeper: poolkeeper.specialize",
    fromEdge: "end",
    to: PK_SERVER,
    toEdge: "end",
  },
  {
    label: "scheduler: answer -> claim finish",
    kind: "gap",
    from: ASK,
    fromEdge: "end",
    to: FINISH,
    toEdge: "start",
  },
  {
    label: "scheduler: finish -> lease answered",
    kind: "gap",
    from: FINISH,
    fromEdge: "end",
    to: LEASE,
    toEdge: "end",
  },
  {
    label: "gateway: lease -> first call",
    kind: "gap",
    from: GATEWAY_LEASE,
    fromEdge: "end",
    to: "gateway: gateway.call",
    toEdge: "start",
  },
];

/** Median and p99 of each hop across the traces that have both of its spans. */
export function hopFigures(
  traces: Map<string, TraceSpans>,
  fig: (xs: number[]) => { p50_ms: number; p99_ms: number },
): Record<string, { p50_ms: number; p99_ms: number; n: number }> {
  const out: Record<string, { p50_ms: number; p99_ms: number; n: number }> = {};
  for (const g of GAPS) {
    const xs: number[] = [];
    for (const t of traces.values()) {
      if (g.kind === "gap") {
        const a = t.get(g.from);
        const b = t.get(g.to);
        if (a && b) xs.push(b[g.toEdge] - a[g.fromEdge]);
      } else {
        const o = t.get(g.outer);
        const i = t.get(g.inner);
        if (o && i) xs.push(o.end - o.start - (i.end - i.start));
      }
    }
    if (xs.length > 0) out[g.label] = { ...fig(xs), n: xs.length };
  }
  return out;
}
