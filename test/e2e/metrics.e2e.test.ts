import { expect } from "chai";
import { readdirSync, readFileSync, readlinkSync } from "node:fs";
import { connect } from "@nats-io/transport-node";
import { Codecs, subjects } from "@fizz/events";
import { natsConnectionOptions } from "@fizz/kit";
import { startPlatform, type Platform } from "./helpers";
import {
  dashboardQueries,
  droppedAnnotationLabels,
  endpointsOverridingLabels,
  readExposition,
  ruleQueries,
  TARGET_LABELS,
  type Exported,
  type Query,
} from "./metrics-queries";
import { dumpLogsOnFailure, eventually, fizzOk } from "./probes";

/** Prometheus' own series: not exported by any service, its labels come from the scrape config. */
const PROMETHEUS_OWN = new Set(["up"]);
const HISTOGRAM_SUFFIXES = ["_bucket", "_count", "_sum"];

/** TCP ports a process listens on (/proc: the launcher picks the ops ports and keeps them). */
function listeningPorts(pid: number): number[] {
  const inodes = new Set<string>();
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    try {
      const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`));
      if (m) inodes.add(m[1]!);
    } catch {
      // closed meanwhile
    }
  }
  const ports: number[] = [];
  for (const table of ["/proc/net/tcp", "/proc/net/tcp6"]) {
    for (const line of readFileSync(table, "utf8").split("\n").slice(1)) {
      const f = line.trim().split(/\s+/);
      // local_address is f[1] (hex ip:port), st f[3] (0A = LISTEN), inode f[9].
      if (f[3] === "0A" && f[9] !== undefined && inodes.has(f[9]))
        ports.push(parseInt(f[1]!.split(":")[1]!, 16));
    }
  }
  return ports;
}

describe("monitoring: alert annotations and scrape config", () => {
  it("read only labels their alert's aggregations keep", () => {
    const rules = ruleQueries();
    expect(rules.filter((q) => q.annotationLabels.length > 0)).to.have.length.greaterThan(5);
    const problems = rules.flatMap((q) =>
      (droppedAnnotationLabels(q) ?? []).map((l) => `${q.where}: $labels.${l} is aggregated away`),
    );
    expect(problems).to.deep.equal([]);
  });

  it("reach the services' own namespace label: the PodMonitor honours it over the pod's", () => {
    // Queries on service metrics select by a label Prometheus also sets from the target
    // (`namespace`): without honorLabels the function's would be renamed exported_namespace.
    const clashing = [...dashboardQueries(), ...ruleQueries()].filter(
      (q) =>
        q.metrics.some((m) => !PROMETHEUS_OWN.has(m)) && q.labels.some((l) => TARGET_LABELS.has(l)),
    );
    expect(clashing).to.have.length.greaterThan(0);
    expect(endpointsOverridingLabels()).to.deep.equal([]);
  });

  it("catch an annotation label the aggregation drops", () => {
    const q = { ...ruleQueries()[0]!, groupings: [["service"]], annotationLabels: ["function"] };
    expect(droppedAnnotationLabels(q)).to.deep.equal(["function"]);
  });
});

/**
 * The Grafana dashboard and the PrometheusRule in k8s/monitoring/ against what a running platform
 * really exports: every expression parses as PromQL, and every metric and label it reads is on
 * some service's /metrics after HTTP traffic, an async call that ends as a dead letter, a failing
 * function and a function printing past its log budget.
 */
describe("monitoring: dashboard and alert queries against the services' /metrics", function () {
  this.timeout(240_000);
  let p: Platform;
  const queries: Query[] = [...dashboardQueries(), ...ruleQueries()];
  afterEach(dumpLogsOnFailure(() => p, 150));

  before(async () => {
    p = await startPlatform({
      // Async retries in milliseconds, so the dead letter comes within the test.
      FIZZ_INVOKER_RETRY_BASE_MS: "20",
      FIZZ_INVOKER_RETRY_MAX_MS: "100",
      // A tiny log budget, so the flood below is cut and counted.
      FIZZ_LOG_LINES_PER_SECOND: "5",
      FIZZ_LOG_BURST_SECONDS: "1",
    });
    await p.file("ok.js", `module.exports = async () => ({ status: 200, body: "ok" });\n`);
    await p.file("fail.js", `module.exports = async () => ({ status: 500, body: "broken" });\n`);
    await p.file(
      "flood.js",
      `module.exports = async () => { for (let i = 0; i < 500; i++) console.log("line " + i); return "flooded"; };\n`,
    );
    await fizzOk(p, "env create --name nodejs --image fizz/env-node");
    for (const fn of ["ok", "fail", "flood"])
      await fizzOk(p, `fn create --name ${fn} --env nodejs --code ${fn}.js`);
  });
  after(async () => {
    await p?.stop();
  });

  it("parses every dashboard and alert expression with Prometheus' PromQL grammar", () => {
    expect(queries.length).to.be.greaterThan(20);
    const bad = queries.filter((q) => q.errors.length > 0 || q.metrics.length === 0);
    expect(bad.map((q) => `${q.where}: ${q.expr} ${q.errors.join(", ")}`)).to.deep.equal([]);
  });

  it("finds every metric and label the queries read on the services' /metrics after traffic", async () => {
    const status = async (path: string, init?: RequestInit) =>
      (await fetch(`${p.gatewayUrl}${path}`, init)).status;
    for (let i = 0; i < 5; i++) expect(await status("/function/ok")).to.equal(200);
    for (let i = 0; i < 3; i++) expect(await status("/function/fail")).to.equal(500);
    expect(await status("/function/flood")).to.equal(200);
    expect(await status("/async-function/fail", { method: "POST", body: "x" })).to.equal(202);

    const services = ["gateway", "registry", "scheduler", "poolkeeper", "kubewatcher"];
    const scrapeAll = async (): Promise<Exported> => {
      const exported: Exported = new Map();
      const pids = p.pids();
      for (const svc of services) {
        const pid = pids[svc];
        expect(pid, `${svc} runs`).to.be.a("number");
        let scraped = false;
        for (const port of listeningPorts(pid!)) {
          const res = await fetch(`http://127.0.0.1:${port}/metrics`, {
            headers: { authorization: `Bearer ${p.adminToken}` },
          }).catch(() => undefined);
          const text = res?.status === 200 ? await res.text() : "";
          if (!text.includes(`service="${svc}"`)) continue;
          readExposition(text, exported);
          scraped = true;
        }
        expect(scraped, `${svc} serves /metrics`).to.equal(true);
      }
      return exported;
    };
    // Dead letters come after the retries, and log drops after the flood is read: wait for both.
    const exported = await eventually(
      "the dead letter and the log drops are counted",
      async () => {
        const e = await scrapeAll();
        const seen = (name: string) => (e.get(name)?.size ?? 0) > 0;
        return seen("fizz_function_dead_letters_total") &&
          seen("fizz_function_log_lines_dropped_total")
          ? e
          : undefined;
      },
      90_000,
      1000,
    );

    const problems: string[] = [];
    for (const q of queries) {
      const own = q.metrics.filter((m) => !PROMETHEUS_OWN.has(m));
      const labelsOf = new Set<string>();
      for (const m of own) {
        const base = HISTOGRAM_SUFFIXES.reduce(
          (n, s) =>
            n.endsWith(s) && exported.has(n.slice(0, -s.length)) ? n.slice(0, -s.length) : n,
          m,
        );
        const labels = exported.get(m) ?? exported.get(base);
        if (labels === undefined) problems.push(`${q.where}: ${m} is not exported`);
        else if (labels.size === 0) problems.push(`${q.where}: ${m} has no series after traffic`);
        for (const l of labels ?? []) labelsOf.add(l);
        if (m !== base || m.endsWith("_bucket")) labelsOf.add("le");
      }
      // Only Prometheus' own series here (`up`): their labels come from the scrape config.
      if (own.length === 0) continue;
      for (const l of q.labels)
        if (!labelsOf.has(l))
          problems.push(`${q.where}: label ${l} is on none of ${own.join(", ")}`);
      // Without aggregation an alert's $labels are the series' own plus the scrape target's.
      if (droppedAnnotationLabels(q) === undefined)
        for (const l of q.annotationLabels)
          if (!labelsOf.has(l) && !TARGET_LABELS.has(l))
            problems.push(`${q.where}: annotation label ${l} is on none of ${own.join(", ")}`);
    }
    expect(problems).to.deep.equal([]);
  });

  it("answers gateway.stats to the registry's user only: the application user gets nothing", async () => {
    const ask = Codecs.gatewayStats.request.encode(
      { namespace: "default", name: "ok" },
      "metrics-test",
    );
    const registry = await connect(natsConnectionOptions(p.natsUrlAs("registry")));
    const app = await connect(p.appNats);
    try {
      const reply = await registry.request(subjects().gatewayStats, ask, { timeout: 10_000 });
      const stats = Codecs.gatewayStats.reply.decode(reply.data).data;
      expect(stats.functions.map((f) => f.name)).to.include("ok");
      const refused = await app.request(subjects().gatewayStats, ask, { timeout: 3000 }).then(
        () => "answered",
        (err: unknown) => String(err),
      );
      expect(refused).to.match(/permission|timeout|no responders/i);
    } finally {
      await registry.close();
      await app.close();
    }
  });
});
