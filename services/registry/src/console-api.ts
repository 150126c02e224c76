import type { Express, Request } from "express";
import { FizzError, type AnyObject, type Instance } from "@fizz/events";
import type { ConsoleBus } from "./console-bus";
import { invokeFunction, parseInvoke, type InvokeTarget } from "./console-invoke";
import { functionStats } from "./console-stats";
import type { Operations } from "./operations";
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
}

const TRIGGER_KINDS = ["mqtriggers", "timetriggers", "watchtriggers"] as const;

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

  app.get("/v1/console/functions", async (_req, res) => {
    const ops = operations();
    const [functions, httptriggers, instances, ...others] = await Promise.all([
      ops.list("functions"),
      ops.list("httptriggers"),
      instancesOrNone(bus()),
      ...TRIGGER_KINDS.map((k) => ops.list(k)),
    ]);
    const key = (ns: string, name: string) => `${ns}/${name}`;
    const items = functions.map((f) => ({
      namespace: f.metadata.namespace,
      name: f.metadata.name,
      revision: f.metadata.revision,
      environment: str(specOf(f).environment),
      routes: [] as Record<string, unknown>[],
      triggers: [] as Record<string, unknown>[],
      instances: { specialized: 0, current: 0 },
    }));
    const byKey = new Map(items.map((i) => [key(i.namespace, i.name), i]));
    const of = (t: AnyObject) => byKey.get(key(t.metadata.namespace, str(specOf(t).function)));
    for (const t of httptriggers)
      of(t)?.routes.push({
        trigger: t.metadata.name,
        ...pick(specOf(t), ["path", "prefix", "methods", "host"]),
      });
    TRIGGER_KINDS.forEach((kind, i) => {
      for (const t of others[i] ?? [])
        of(t)?.triggers.push({
          kind,
          name: t.metadata.name,
          ...pick(specOf(t), ["subject", "stream", "cron", "namespace", "resource"]),
        });
    });
    for (const inst of instances.list) {
      const f = inst.function;
      const item = f ? byKey.get(key(f.namespace, f.name)) : undefined;
      if (!item || !f) continue;
      item.instances.specialized++;
      if (f.revision === item.revision) item.instances.current++;
    }
    res.status(200).json({ items, instancesKnown: instances.known });
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
async function instancesOrNone(bus: ConsoleBus): Promise<{ list: Instance[]; known: boolean }> {
  try {
    return { list: await bus.instances(), known: true };
  } catch {
    return { list: [], known: false };
  }
}

function specOf(o: AnyObject): Record<string, unknown> {
  return o.spec;
}

function str(v: unknown): string {
  return typeof v === "string" ? v : "";
}

function pick(spec: Record<string, unknown>, keys: string[]): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const k of keys) if (spec[k] !== undefined) out[k] = spec[k];
  return out;
}
