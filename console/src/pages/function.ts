import { fnPath, json, SignInNeeded } from "../api";
import { lineChart } from "../chart";
import { clear, errorBox, h, table } from "../dom";
import {
  moreText,
  routeText,
  triggerText,
  type FunctionSummary,
  type InstanceRow,
  type Stats,
} from "../types";
import { invokeForm } from "./invoke-form";
import { logTail } from "./log-tail";

const REFRESH_MS = 5000;

/** One function: what it is, its last hour as charts, its instances, its live log, and a way to call it. */
export async function functionPage(
  ns: string,
  name: string,
): Promise<{ el: HTMLElement; stop: () => void }> {
  // Its own row, not the listing: the listing comes a page at a time.
  const { item: f } = await json<{ item: FunctionSummary }>(
    "GET",
    `/v1/console/functions/${encodeURIComponent(ns)}/${encodeURIComponent(name)}`,
  );
  const charts = h("div", { class: "charts", id: "charts" });
  const totals = h("p", { class: "muted", id: "totals" });
  const instances = h("div", { id: "instances" });
  const tail = logTail(ns, name);

  const refresh = async () => {
    const [stats, inst] = await Promise.all([
      json<Stats>("GET", `${fnPath(ns, name)}/stats`),
      json<{ items: InstanceRow[] }>("GET", `${fnPath(ns, name)}/instances`),
    ]);
    drawCharts(charts, totals, stats);
    clear(instances);
    instances.appendChild(
      table(
        ["instance", "state", "revision", "backend", "started"],
        inst.items.map((i) => [
          i.id,
          i.state,
          String(i.revision ?? ""),
          i.backend,
          new Date(i.startedAt).toLocaleTimeString(),
        ]),
        "No instances: the next call specializes one from the pool.",
      ),
    );
  };
  let timer: ReturnType<typeof setTimeout> | undefined;
  let stopped = false;
  const loop = async () => {
    try {
      await refresh();
    } catch (err) {
      if (err instanceof SignInNeeded) return;
      clear(charts);
      charts.appendChild(errorBox(err));
    }
    if (!stopped) timer = setTimeout(() => void loop(), REFRESH_MS);
  };
  void loop();

  const el = h(
    "section",
    { id: "function" },
    h("h1", {}, f.name, h("span", { class: "muted" }, ` in ${f.namespace}`)),
    h(
      "dl",
      { class: "facts" },
      h("dt", {}, "environment"),
      h("dd", { id: "fn-environment" }, f.environment),
      h("dt", {}, "revision"),
      h("dd", {}, String(f.revision)),
      h("dt", {}, "routes"),
      h("dd", { id: "fn-routes" }, joined(f.routes.map(routeText), f.routesTotal)),
      h("dt", {}, "triggers"),
      h("dd", {}, joined(f.triggers.map(triggerText), f.triggersTotal)),
    ),
    h("h2", {}, "Last hour"),
    totals,
    charts,
    h("h2", {}, "Instances"),
    instances,
    invokeForm(ns, name),
    tail.el,
  );
  return {
    el,
    stop: () => {
      stopped = true;
      clearTimeout(timer);
      tail.stop();
    },
  };
}

function drawCharts(box: HTMLElement, totals: HTMLElement, s: Stats): void {
  const times = s.points.map((p) => p.t);
  const requests = s.points.reduce((a, p) => a + p.count, 0);
  const errors = s.points.reduce((a, p) => a + p.errors, 0);
  totals.textContent = `${requests} requests, ${errors} errors in the last hour (${s.gateways.length} gateway${s.gateways.length === 1 ? "" : "s"} answered)`;
  totals.dataset.requests = String(requests);
  const figure = (title: string, chart: SVGSVGElement) =>
    h("figure", {}, h("figcaption", {}, title), chart);
  clear(box);
  box.append(
    figure(
      "Invocations per second",
      lineChart(
        times,
        [{ label: "invocations/s", cls: "s1", values: s.points.map((p) => p.rps) }],
        "/s",
      ),
    ),
    figure(
      "Latency p50 / p99",
      lineChart(
        times,
        [
          { label: "p50", cls: "s1", values: s.points.map((p) => p.p50) },
          { label: "p99", cls: "s2", values: s.points.map((p) => p.p99) },
        ],
        "ms",
      ),
    ),
    figure(
      "Errors",
      lineChart(times, [{ label: "errors", cls: "s3", values: s.points.map((p) => p.errors) }], ""),
    ),
  );
}

/** The row's routes or triggers on one line; the row holds the first 100, then "and N more". */
function joined(items: string[], total: number | undefined): string {
  const more = moreText(items.length, total);
  return [...items, ...(more === undefined ? [] : [more])].join("  ") || "—";
}
