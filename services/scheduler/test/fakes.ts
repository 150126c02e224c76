import {
  FizzError,
  type Instance,
  type ObjectsByPlural,
  type SpecializeRequest,
} from "@fizz/events";
import { silentLogger } from "@fizz/kit";
import { Catalog, type RegistryClient } from "../src/catalog";
import type { InstancesPublisher, PoolkeeperClient } from "../src/clients";
import type { Model } from "../src/handlers";
import { InstanceTable } from "../src/instance-table";
import { LeaseService } from "../src/lease";
import { Reaper } from "../src/reaper";
import { Retirer } from "../src/retirement";
import type { RouteStore } from "../src/route-cache";
import { instanceFor } from "./fixtures";

type Obj = ObjectsByPlural["functions"] | ObjectsByPlural["environments"];

export class FakeRegistry implements RegistryClient {
  readonly objects = new Map<string, Obj>();
  gets = 0;
  set(...objs: Obj[]): this {
    for (const o of objs)
      this.objects.set(`${o.kind}/${o.metadata.namespace}/${o.metadata.name}`, o);
    return this;
  }
  async list<K extends "functions" | "environments">(kind: K) {
    const want = kind === "functions" ? "Function" : "Environment";
    return [...this.objects.values()].filter((o) => o.kind === want) as Array<ObjectsByPlural[K]>;
  }
  async get<K extends "functions" | "environments">(kind: K, namespace: string, name: string) {
    this.gets++;
    const o = this.objects.get(
      `${kind === "functions" ? "Function" : "Environment"}/${namespace}/${name}`,
    );
    if (!o) throw new FizzError("NOT_FOUND", `${kind} ${namespace}/${name} not found`);
    return o as ObjectsByPlural[K];
  }
}

export class FakePoolkeeper implements PoolkeeperClient {
  readonly specializeCalls: SpecializeRequest[] = [];
  readonly retired: string[] = [];
  instances: Instance[] = [];
  /** Replace to make specialize fail or hang. */
  behave: (req: SpecializeRequest) => Promise<Instance> = async (req) => {
    await new Promise((r) => setTimeout(r, 5));
    return instanceFor(req.function, { env: req.environment.name });
  };
  async specialize(req: SpecializeRequest): Promise<Instance> {
    this.specializeCalls.push(req);
    const inst = await this.behave(req);
    this.instances.push(inst);
    return inst;
  }
  async retire(instanceId: string): Promise<boolean> {
    this.retired.push(instanceId);
    const before = this.instances.length;
    this.instances = this.instances.filter((i) => i.id !== instanceId);
    return this.instances.length < before;
  }
  async list(): Promise<Instance[]> {
    return [...this.instances];
  }
}

export class FakeRoutes implements RouteStore {
  readonly routes = new Map<string, Instance>();
  puts = 0;
  async put(instance: Instance) {
    this.puts++;
    this.routes.set(instance.id, instance);
  }
  async remove(_ns: string, _fn: string, id: string) {
    this.routes.delete(id);
  }
  async loadAll() {
    return [...this.routes.values()];
  }
}

export class FakePublisher implements InstancesPublisher {
  readonly events: Array<{ namespace: string; name: string; revision: number; removed: string[] }> =
    [];
  removed(namespace: string, name: string, revision: number, removed: string[]) {
    this.events.push({ namespace, name, revision, removed });
  }
  removedIds(): string[] {
    return this.events.flatMap((e) => e.removed);
  }
}

/** The scheduler's model wired to fakes, with a clock the test moves by hand. */
export function world(opts: { drainMs?: number; loadFailureTtlMs?: number } = {}) {
  const clock = { t: 1_000_000 };
  const now = () => clock.t;
  const logger = silentLogger();
  const registry = new FakeRegistry();
  const poolkeeper = new FakePoolkeeper();
  const routes = new FakeRoutes();
  const publisher = new FakePublisher();
  const catalog = new Catalog(registry);
  const table = new InstanceTable();
  const retirer = new Retirer({
    table,
    routes,
    poolkeeper,
    publisher,
    catalog,
    drainMs: opts.drainMs ?? 60_000,
    now,
    logger,
  });
  const leases = new LeaseService({
    catalog,
    table,
    poolkeeper,
    routes,
    retirer,
    loadFailureTtlMs: opts.loadFailureTtlMs ?? 5000,
    now,
    logger,
  });
  const reaper = new Reaper({ table, catalog, retirer, intervalMs: 1000, now, logger });
  const model: Model = { catalog, table, retirer, now, logger };
  return {
    clock,
    registry,
    poolkeeper,
    routes,
    publisher,
    catalog,
    table,
    retirer,
    leases,
    reaper,
    model,
    logger,
  };
}

export function leaseReq(
  fn: string,
  o: { gateway?: string; exclude?: string[]; failed?: string[]; namespace?: string } = {},
) {
  return {
    namespace: o.namespace ?? "default",
    function: fn,
    gateway: o.gateway ?? "gateway-a",
    exclude: o.exclude ?? [],
    failed: o.failed ?? [],
  };
}
