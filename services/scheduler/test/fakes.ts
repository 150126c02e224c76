import {
  FizzError,
  type Instance,
  type ObjectsByPlural,
  type SpecializeRequest,
} from "@fizz/events";
import { silentLogger } from "@fizz/kit";
import type { CatalogKind, RegistryClient } from "../src/catalog";
import type { InstancesPublisher, PoolkeeperClient } from "../src/clients";
import {
  catalogListing,
  onInstanceEvent,
  onInstancesRemovedElsewhere,
  onUsageReport,
  type Model,
} from "../src/handlers";
import { buildScheduler } from "../src/graph";
import type { RouteStore } from "../src/route-cache";
import { instanceFor } from "./fixtures";
import { FakeClock, settle } from "@fizz/testkit";
import { MemoryClaims } from "./memory-claims";

type Obj = ObjectsByPlural["functions"] | ObjectsByPlural["environments"];

export class FakeRegistry implements RegistryClient {
  readonly objects = new Map<string, Obj>();
  gets = 0;
  set(...objs: Obj[]): this {
    for (const o of objs)
      this.objects.set(`${o.kind}/${o.metadata.namespace}/${o.metadata.name}`, o);
    return this;
  }
  /** What registry.list answers for `kind`. */
  list<K extends CatalogKind>(kind: K): Array<ObjectsByPlural[K]> {
    const want = kind === "functions" ? "Function" : "Environment";
    return [...this.objects.values()].filter((o) => o.kind === want) as Array<ObjectsByPlural[K]>;
  }
  get<K extends CatalogKind>(kind: K, namespace: string, name: string) {
    this.gets++;
    const o = this.objects.get(
      `${kind === "functions" ? "Function" : "Environment"}/${namespace}/${name}`,
    );
    if (!o)
      return Promise.reject(new FizzError("NOT_FOUND", `${kind} ${namespace}/${name} not found`));
    return Promise.resolve(o as ObjectsByPlural[K]);
  }
}

export class FakePoolkeeper implements PoolkeeperClient {
  readonly specializeCalls: SpecializeRequest[] = [];
  readonly retired: string[] = [];
  instances: Instance[] = [];
  /** Called with every instance it specialized, before answering (the specialized event). */
  announce: (instance: Instance) => void = () => undefined;
  /** Replace to make specialize fail or hang. */
  behave: (req: SpecializeRequest) => Promise<Instance> = async (req) => {
    // Answers on a later turn, after every lease already asking has reached its claim.
    await settle();
    return instanceFor(req.function, { env: req.environment.name });
  };
  async specialize(req: SpecializeRequest): Promise<Instance> {
    this.specializeCalls.push(req);
    const inst = await this.behave(req);
    this.instances.push(inst);
    this.announce(inst);
    return inst;
  }
  retire(instanceId: string): Promise<boolean> {
    this.retired.push(instanceId);
    const before = this.instances.length;
    this.instances = this.instances.filter((i) => i.id !== instanceId);
    return Promise.resolve(this.instances.length < before);
  }
  list(): Promise<Instance[]> {
    return Promise.resolve([...this.instances]);
  }
}

export class FakeRoutes implements RouteStore {
  readonly routes = new Map<string, Instance>();
  puts = 0;
  put(instance: Instance): Promise<void> {
    this.puts++;
    this.routes.set(instance.id, instance);
    return Promise.resolve();
  }
  remove(_ns: string, _fn: string, id: string): Promise<void> {
    this.routes.delete(id);
    return Promise.resolve();
  }
  loadAll(): Promise<Instance[]> {
    return Promise.resolve([...this.routes.values()]);
  }
}

export class FakePublisher implements InstancesPublisher {
  readonly events: Array<{ namespace: string; name: string; revision: number; removed: string[] }> =
    [];
  constructor(
    private readonly shared?: Shared,
    private readonly sender?: string,
  ) {}
  removed(namespace: string, name: string, revision: number, removed: string[]) {
    this.events.push({ namespace, name, revision, removed });
    // scheduler.instances reaches the other replicas too.
    for (const r of this.shared?.replicas ?? [])
      if (r.name !== this.sender)
        onInstancesRemovedElsewhere(r.model, { namespace, function: name, revision, removed });
  }
  removedIds(): string[] {
    return this.events.flatMap((e) => e.removed);
  }
}

/** What scheduler replicas share: the registry, the poolkeeper, Redis (routes, claims), the clock. */
export interface Shared {
  clock: FakeClock;
  registry: FakeRegistry;
  poolkeeper: FakePoolkeeper;
  routes: FakeRoutes;
  claims: MemoryClaims;
  /** The bus: each replica's handlers for poolkeeper events and other replicas' removals. */
  replicas: Array<{ name: string; model: Model }>;
}

/**
 * The scheduler's model wired to fakes, with a clock the test moves by hand. Pass another world's
 * `shared` to get a second replica on the same registry, poolkeeper, Redis and bus.
 */
export function world(
  opts: {
    drainMs?: number;
    loadFailureTtlMs?: number;
    claimTtlMs?: number;
    shared?: Shared;
  } = {},
) {
  const shared: Shared = opts.shared ?? newShared();
  const { clock, registry, poolkeeper, routes, claims } = shared;
  const name = `replica-${shared.replicas.length + 1}`;
  const { now, after } = clock;
  const logger = silentLogger();
  const publisher = new FakePublisher(shared, name);
  const graph = buildScheduler({
    registry,
    poolkeeper,
    publisher,
    routes,
    claims,
    replica: name,
    config: {
      drainMs: opts.drainMs ?? 60_000,
      claimTtlMs: opts.claimTtlMs ?? 30_000,
      claimPollMs: 5,
      loadFailureTtlMs: opts.loadFailureTtlMs ?? 5000,
      minInstancesRetryMs: 5000,
      reapIntervalMs: 1000,
    },
    now,
    after,
    logger,
  });
  const { catalog, table, retirer, specializer, minInstances, model, reaper } = graph;
  const leases = graph.lease;
  shared.replicas.push({ name, model });
  return {
    name,
    shared,
    clock,
    registry,
    poolkeeper,
    routes,
    claims,
    publisher,
    catalog,
    table,
    retirer,
    specializer,
    minInstances,
    leases,
    reaper,
    model,
    logger,
    /** The catalog as registry.list answers it now (what followRegistryListing feeds it). */
    loadCatalog(): void {
      for (const kind of ["environments", "functions"] as const) {
        const listing = catalogListing(model, kind, () => minInstances.checkAll());
        listing.onAttempt();
        listing.onList(registry.list(kind));
      }
    },
  };
}

function newShared(): Shared {
  const clock = new FakeClock();
  const shared: Shared = {
    clock,
    registry: new FakeRegistry(),
    poolkeeper: new FakePoolkeeper(),
    routes: new FakeRoutes(),
    claims: new MemoryClaims(clock.now),
    replicas: [],
  };
  // The poolkeeper announces every specialized instance to every replica, as on the bus.
  shared.poolkeeper.announce = (instance) => {
    for (const r of shared.replicas) onInstanceEvent(r.model, { event: "specialized", instance });
  };
  return shared;
}

export function leaseReq(
  fn: string,
  o: {
    gateway?: string;
    exclude?: string[];
    failed?: string[];
    namespace?: string;
    minRevision?: number;
  } = {},
) {
  return {
    namespace: o.namespace ?? "default",
    function: fn,
    gateway: o.gateway ?? "gateway-a",
    exclude: o.exclude ?? [],
    failed: o.failed ?? [],
    ...(o.minRevision !== undefined ? { minRevision: o.minRevision } : {}),
  };
}

/** A gateway's scheduler.report: instance id -> requests in flight on it now. */
export function report(
  w: {
    model: Model;
    clock: { t: number };
    table: { get(id: string): { name: string; namespace: string } | undefined };
  },
  gateway: string,
  inFlight: Record<string, number>,
) {
  onUsageReport(w.model, {
    gateway,
    items: Object.entries(inFlight).map(([instanceId, n]) => {
      const t = w.table.get(instanceId);
      return {
        instanceId,
        namespace: t?.namespace ?? "default",
        function: t?.name ?? "hello",
        inFlight: n,
        served: n,
        lastUsedAt: w.clock.t,
      };
    }),
  });
}
