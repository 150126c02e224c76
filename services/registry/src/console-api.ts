import type { Express, Request } from "express";
import { FizzError, type Instance } from "@fizz/events";
import type { ConsoleBus } from "./console-bus";
import {
  consoleFunctionSummary,
  consoleFunctionsPage,
  type InstancesView,
} from "./console-functions";
import { invokeFunction, parseInvoke, type InvokeTarget } from "./console-invoke";
import { functionStats } from "./console-stats";
import type { Operations } from "./operations";
import { notFound } from "./references";
import { checkName } from "./validation";

/**
 * The endpoints the web console needs beyond docs/api.md: everything it shows in one listing,
 * pools, instances, chart data, and the invoke form. They sit behind the same authentication as
 * the rest of the API (reads for the read-only token too; invoking is a POST: admin only).
 */
export interface ConsoleOptions {
  /** FIZZ_CONSOLE_DIR: the built console (undefined: /console/ answers 404). */
  dir: string | undefined;
  /** Undefined until NATS is connected. */
  bus: () => ConsoleBus | undefined;
  /** FIZZ_GATEWAY_URL and the invoke timeout; undefined: invoking answers 503 naming the setting. */
  invoke: InvokeTarget | undefined;
  /** Byte budget of a listing page's functions (default CONSOLE_PAGE_MAX_BYTES). */
  pageBytes?: number;
}

/** A console page's byte budget when not configured: FIZZ_LIST_PAGE_MAX_BYTES's default. */
const CONSOLE_PAGE_MAX_BYTES = 4 * 1024 * 1024;

export function consoleApi(app: Express, opts: ConsoleOptions, operations: () => Operations): void {
  const bus = (): ConsoleBus => {
    const b = opts.bus();
    if (!b)
      throw new FizzError("UNAVAILABLE", "the registry is starting (not connected to NATS yet)", {
        retryable: true,
      });
    return b;
  };
  const fnParams = (req: Request): { ns: string; name: string } => ({
    ns: checkName(String(req.params.ns ?? ""), "namespace"),
    name: checkName(String(req.params.name ?? ""), "name"),
  });

  // A page of functions with what calls and runs them (console-functions.ts): `?limit=&continue=`
  // as every list, a first page of LIST_DEFAULT_LIMIT without them; never the whole listing.
  const pageBytes = opts.pageBytes ?? CONSOLE_PAGE_MAX_BYTES;
  app.get("/v1/console/functions", async (req, res) => {
    const q = req.query as Record<string, unknown>;
    const params = { limit: q.limit, continue: q.continue };
    const page = await consoleFunctionsPage(operations().store, params, pageBytes, () =>
      instancesOrNone(bus()),
    );
    res.status(200).json(page);
  });

  // One function's row (the console's function view), without paging through the listing.
  app.get("/v1/console/functions/:ns/:name", async (req, res) => {
    const { ns, name } = fnParams(req);
    const found = await consoleFunctionSummary(operations().store, ns, name, pageBytes, () =>
      instancesOrNone(bus()),
    );
    if (!found) notFound("functions", ns, name);
    res.status(200).json(found);
  });

  app.get("/v1/pools", async (_req, res) => {
    const instances = await bus().instances();
    const pools = new Map<string, Pool>();
    for (const i of instances) {
      const k = `${i.environment.namespace}/${i.environment.name}`;
      let p = pools.get(k);
      if (!p) {
        p = { ...i.environment, warm: 0, specialized: 0, total: 0, backend: i.backend };
        pools.set(k, p);
      }
      p[i.state]++;
      p.total++;
    }
    // Environments with no instance at all (pool size 0, or the poolkeeper cannot start them).
    for (const e of await operations().list("environments")) {
      const k = `${e.metadata.namespace}/${e.metadata.name}`;
      if (!pools.has(k))
        pools.set(k, {
          namespace: e.metadata.namespace,
          name: e.metadata.name,
          warm: 0,
          specialized: 0,
          total: 0,
        });
    }
    const items = [...pools.values()].sort(
      (a, b) => a.namespace.localeCompare(b.namespace) || a.name.localeCompare(b.name),
    );
    res.status(200).json({ items });
  });

  app.get("/v1/namespaces/:ns/functions/:name/instances", async (req, res) => {
    const { ns, name } = fnParams(req);
    // 404 for a function that does not exist, rather than an empty list that hides a typo.
    await operations().get("functions", ns, name);
    const items = (await bus().instances())
      .filter((i) => i.function?.namespace === ns && i.function.name === name)
      .map((i) => ({
        id: i.id,
        state: i.state,
        revision: i.function?.revision,
        environment: i.environment,
        backend: i.backend,
        concurrency: i.concurrency,
        startedAt: i.startedAt,
        specializedAt: i.specializedAt,
      }));
    res.status(200).json({ items });
  });

  app.get("/v1/namespaces/:ns/functions/:name/stats", async (req, res) => {
    const { ns, name } = fnParams(req);
    await operations().get("functions", ns, name);
    const replies = await bus().gatewayStats({ namespace: ns, name });
    res.status(200).json(functionStats(replies, ns, name, Date.now()));
  });

  app.post("/v1/namespaces/:ns/functions/:name/invoke", async (req, res) => {
    const { ns, name } = fnParams(req);
    const call = parseInvoke(req.body);
    if (!opts.invoke)
      throw new FizzError(
        "UNAVAILABLE",
        "invoking from the console needs FIZZ_GATEWAY_URL on the registry",
        { field: "FIZZ_GATEWAY_URL" },
      );
    await operations().get("functions", ns, name);
    res.status(200).json(await invokeFunction(opts.invoke, ns, name, call));
  });
}

interface Pool {
  namespace: string;
  name: string;
  warm: number;
  specialized: number;
  total: number;
  backend?: Instance["backend"];
}

/** The listing still shows functions when the poolkeeper is down; `known: false` says why counts are 0. */
async function instancesOrNone(bus: ConsoleBus): Promise<InstancesView> {
  try {
    return { list: await bus.instances(), known: true };
  } catch {
    return { list: [], known: false };
  }
}
