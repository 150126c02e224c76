// The scale section's figures (bench/scale.ts measures them) and its rows in the report.

export interface ScaleFigures {
  functions: number;
  clients: number;
  create_seconds: number;
  /** Functions (each a function and its HTTP trigger: two POSTs) per second. */
  create_per_s: number;
  create_errors: number;
  /** Services started again until every one is ready and the gateway holds every route. */
  restart_to_routing_s: number;
  /** ... and until every sampled function answered 200 through its route. */
  restart_to_serving_s: number;
  restart_sample: number;
  restart_sample_ok: number;
  /** A reference platform's gateway holding one route, in rounds alternating with the big one's. */
  gateway_rps_one_route: number;
  gateway_rps_many_routes: number;
  /** Many over one, the median of the alternating rounds' ratios: 1 = no cost from the table. */
  gateway_rps_ratio: number;
  /** The big platform's own gateway before the 10,000 were created (not alternated: context). */
  gateway_rps_one_route_before: number;
  /** The gateway's CPU per request (µs), medians over the same rounds: the cost itself (a busy
   * machine still moves it, less than req/s). */
  gateway_cpu_us_one_route: number;
  gateway_cpu_us_many_routes: number;
  /** Measured rounds per table size (each wrkSeconds long). */
  gateway_rounds: number;
  list_limit: number;
  list_pages: number;
  list_page_ms_p50: number;
  list_page_ms_p99: number;
  /** One unpaginated GET of every function, for comparison. */
  list_all_ms: number;
  memory_per_function_bytes: Record<string, number>;
  /** CPU each service spent per function created (its two writes and their events), ms. */
  cpu_ms_per_function: Record<string, number>;
  /** Bundling the services (the launcher does it when sources changed), left out of restart_*. */
  restart_bundle_s: number;
}

export function scaleRows(f: ScaleFigures): [string, string, string][] {
  const mem = Object.entries(f.memory_per_function_bytes)
    .map(([s, b]) => `${s} ${b}`)
    .join(", ");
  return [
    [
      `scale: ${f.functions} functions with routes, ${f.clients} clients: created per s`,
      `${f.create_per_s} (${f.create_errors} errors)`,
      ">= 200",
    ],
    [
      `scale: restart → all routes / + ${f.restart_sample} sampled answer 200 (s)`,
      `${f.restart_to_routing_s} / ${f.restart_to_serving_s} (${f.restart_sample_ok} ok)`,
      "<= 5",
    ],
    [
      `scale: gateway req/s one route (a reference platform) / among all (median ratio), ${f.gateway_rounds} alternating rounds; this one before the creations`,
      `${f.gateway_rps_one_route} / ${f.gateway_rps_many_routes} (${f.gateway_rps_ratio}); ${f.gateway_rps_one_route_before}`,
      ">= 0.95",
    ],
    [
      "scale: gateway CPU us/req one route / among all",
      `${f.gateway_cpu_us_one_route} / ${f.gateway_cpu_us_many_routes}`,
      "reported",
    ],
    [
      `scale: REST list, per page of ${f.list_limit}: p50 / p99 ms over ${f.list_pages} pages (one unpaginated list)`,
      `${f.list_page_ms_p50} / ${f.list_page_ms_p99} (${f.list_all_ms})`,
      "p99 < 50",
    ],
    ["scale: memory per function (bytes RSS)", mem, "reported"],
    [
      "scale: CPU per function created (ms)",
      Object.entries(f.cpu_ms_per_function)
        .map(([s, ms]) => `${s} ${ms}`)
        .join(", "),
      "reported",
    ],
  ];
}
