/** The shapes of the registry's console endpoints (services/registry/src/console-api.ts). */
export interface FunctionSummary {
  namespace: string;
  name: string;
  revision: number;
  environment: string;
  /** The first few routes (a row is bounded); `routesTotal` counts them all. */
  routes: { trigger: string; path?: string; prefix?: string; methods?: string[]; host?: string }[];
  /** Absent from registries before rows were bounded (their rows held every route and trigger). */
  routesTotal?: number;
  routesMore?: boolean;
  triggers: {
    kind: string;
    name: string;
    subject?: string;
    stream?: string;
    cron?: string;
    namespace?: string;
    resource?: string;
  }[];
  triggersTotal?: number;
  triggersMore?: boolean;
  instances: { specialized: number; current: number };
}

export interface StatsPoint {
  t: number;
  count: number;
  errors: number;
  rps: number;
  p50: number | null;
  p99: number | null;
}

export interface Stats {
  bucketSeconds: number;
  gateways: string[];
  points: StatsPoint[];
}

export interface InstanceRow {
  id: string;
  state: string;
  revision?: number;
  backend: string;
  startedAt: number;
  specializedAt?: number;
}

export interface Pool {
  namespace: string;
  name: string;
  warm: number;
  specialized: number;
  total: number;
}

export interface InvokeAnswer {
  status: number;
  headers: [string, string][];
  body: string;
  bodyEncoding: "utf8" | "base64";
  truncated: boolean;
  durationMs: number;
}

export interface LogLine {
  namespace?: string;
  function?: string;
  instanceId?: string;
  stream?: string;
  line?: string;
  ts?: number;
  requestId?: string;
}

/** "and N more" for a bounded row's routes or triggers (shown, total), or undefined when none. */
export function moreText(shown: number, total: number | undefined): string | undefined {
  const rest = (total ?? shown) - shown;
  return rest > 0 ? `and ${rest} more` : undefined;
}

export function routeText(r: FunctionSummary["routes"][number]): string {
  const methods = r.methods && r.methods.length > 0 ? r.methods.join(",") : "ANY";
  const where = r.path ?? `${r.prefix ?? ""}*`;
  return `${methods} ${r.host ?? ""}${where}`;
}

export function triggerText(t: FunctionSummary["triggers"][number]): string {
  switch (t.kind) {
    case "mqtriggers":
      return `mq ${t.subject ?? ""}${t.stream ? ` (stream ${t.stream})` : ""}`;
    case "timetriggers":
      return `timer ${t.cron ?? ""}`;
    case "watchtriggers":
      return `watch ${t.resource ?? ""} in ${t.namespace ?? ""}`;
    default:
      return `${t.kind} ${t.name}`;
  }
}
