import { readFileSync } from "node:fs";
import path from "node:path";
import { parser } from "@prometheus-io/lezer-promql";
import { parse as parseYaml } from "yaml";
import { ROOT } from "./helpers";

/** One query of the dashboard or the rules, with what it reads. */
export interface Query {
  /** Where it is: panel title or alert name. */
  where: string;
  expr: string;
  /** Metric names selected (as written: a histogram's `_bucket` included). */
  metrics: string[];
  /** Label names matched on or grouped by. */
  labels: string[];
  /** Parse errors (the offending text), none for a valid expression. */
  errors: string[];
  /**
   * The `by` labels of each aggregation (undefined for `without`, whose result labels depend on
   * the series): what survives into an alert's `$labels`.
   */
  groupings: (string[] | undefined)[];
  /** Labels an alert's annotations read (`$labels.x`); none for dashboard queries. */
  annotationLabels: string[];
}

export const MONITORING_DIR = path.join(ROOT, "k8s", "monitoring");

/** Grafana's own variables are not PromQL; the interval ones stand for a duration. */
function substitute(expr: string): string {
  return expr.replace(/\$__(rate_interval|interval|range)/g, "5m");
}

/** Parses with Prometheus' own grammar (lezer-promql) and lists what the expression reads. */
export function analyse(where: string, raw: string): Query {
  const expr = substitute(raw);
  const metrics = new Set<string>();
  const labels = new Set<string>();
  const errors: string[] = [];
  const groupings: (string[] | undefined)[] = [];
  parser.parse(expr).iterate({
    enter(node) {
      const text = expr.slice(node.from, node.to);
      if (node.type.isError)
        errors.push(`${node.from}: "${expr.slice(node.from, node.from + 20)}"`);
      else if (node.name === "Identifier" && node.node.parent?.name === "VectorSelector")
        metrics.add(text);
      else if (node.name === "LabelName") labels.add(text);
      else if (node.name === "AggregateExpr") {
        // No modifier: no label survives; `by`: those named; `without`: depends on the series.
        const mod = node.node.getChild("AggregateModifier");
        const names = mod?.getChild("GroupingLabels")?.getChildren("LabelName") ?? [];
        groupings.push(
          mod === null || mod.getChild("By") !== null
            ? names.map((n) => expr.slice(n.from, n.to))
            : undefined,
        );
      }
    },
  });
  return {
    where,
    expr: raw,
    metrics: [...metrics],
    labels: [...labels],
    errors,
    groupings,
    annotationLabels: [],
  };
}

interface Panel {
  title?: string;
  targets?: { expr?: string }[];
  panels?: Panel[];
}
interface Dashboard {
  panels: Panel[];
  templating: { list: { name: string; query?: string | { query?: string } }[] };
}

/** Every PromQL expression of the Grafana dashboard, its variables' label_values included. */
export function dashboardQueries(): Query[] {
  const d = JSON.parse(
    readFileSync(path.join(MONITORING_DIR, "grafana-dashboard.json"), "utf8"),
  ) as Dashboard;
  const out: Query[] = [];
  const walk = (panels: Panel[]) => {
    for (const p of panels) {
      for (const t of p.targets ?? [])
        if (t.expr !== undefined) out.push(analyse(`panel "${p.title ?? "?"}"`, t.expr));
      walk(p.panels ?? []);
    }
  };
  walk(d.panels);
  for (const v of d.templating.list) {
    const q = typeof v.query === "string" ? v.query : v.query?.query;
    const m = q === undefined ? null : /^label_values\((.+),\s*([a-zA-Z_]\w*)\)$/.exec(q);
    if (!m) continue;
    const a = analyse(`variable $${v.name}`, m[1]!);
    out.push({ ...a, labels: [...a.labels, m[2]!] });
  }
  return out;
}

interface RuleFile {
  kind: string;
  spec: {
    groups: {
      name: string;
      rules: {
        alert?: string;
        record?: string;
        expr: string;
        annotations?: Record<string, string>;
      }[];
    }[];
  };
}

/** Every rule expression of the PrometheusRule, with the labels its annotations read. */
export function ruleQueries(): Query[] {
  const doc = parseYaml(
    readFileSync(path.join(MONITORING_DIR, "prometheus-rules.yaml"), "utf8"),
  ) as RuleFile;
  if (doc.kind !== "PrometheusRule") throw new Error(`expected a PrometheusRule, got ${doc.kind}`);
  return doc.spec.groups.flatMap((g) =>
    g.rules.map((r) => ({
      ...analyse(`rule ${r.alert ?? r.record ?? "?"}`, r.expr),
      annotationLabels: [
        ...new Set(
          Object.values(r.annotations ?? {}).flatMap((a) =>
            [...a.matchAll(/\$labels\.([a-zA-Z_]\w*)/g)].map((m) => m[1]!),
          ),
        ),
      ],
    })),
  );
}

/** Metric name → label names seen on its samples (histogram series under their base name too). */
export type Exported = Map<string, Set<string>>;

/** Reads a Prometheus text exposition into `into`: declared metrics and the labels of samples. */
export function readExposition(text: string, into: Exported): void {
  for (const line of text.split("\n")) {
    const declared = /^# TYPE (\S+) (\S+)/.exec(line);
    if (declared) {
      if (!into.has(declared[1]!)) into.set(declared[1]!, new Set());
      continue;
    }
    if (line === "" || line.startsWith("#")) continue;
    const m = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? /.exec(line);
    if (!m) continue;
    const names = [...(m[2] ?? "").matchAll(/([a-zA-Z_]\w*)="/g)].map((x) => x[1]!);
    const set = into.get(m[1]!) ?? new Set<string>();
    for (const n of names) set.add(n);
    into.set(m[1]!, set);
  }
}

/** Labels Prometheus puts on every scraped series from the target (PodMonitor), not the service. */
export const TARGET_LABELS = new Set([
  "namespace",
  "pod",
  "container",
  "instance",
  "job",
  "endpoint",
]);

/**
 * An alert's annotation labels its aggregations drop (`sum by (service)` and `$labels.function`:
 * an empty value in every notification). Undefined when the expression does not aggregate: then
 * the labels are the series' own, checked against what the services export.
 */
export function droppedAnnotationLabels(q: Query): string[] | undefined {
  if (q.groupings.length === 0) return undefined;
  return q.annotationLabels.filter((l) =>
    q.groupings.some((g) => g !== undefined && !g.includes(l)),
  );
}

interface PodMonitor {
  kind: string;
  spec: { podMetricsEndpoints: { port?: string; honorLabels?: boolean }[] };
}

/** The PodMonitor's endpoints that let the target's labels override a service's own. */
export function endpointsOverridingLabels(): string[] {
  const doc = parseYaml(
    readFileSync(path.join(MONITORING_DIR, "podmonitor.yaml"), "utf8"),
  ) as PodMonitor;
  if (doc.kind !== "PodMonitor") throw new Error(`expected a PodMonitor, got ${doc.kind}`);
  return doc.spec.podMetricsEndpoints
    .filter((e) => e.honorLabels !== true)
    .map((e) => e.port ?? "?");
}
