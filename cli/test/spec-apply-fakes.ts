/**
 * A fake registry client for carrying out plans (spec-apply-order.unit): it keeps objects,
 * refuses what the real one would (a trigger of a function not there yet, a function of a package
 * not built yet, a route another trigger holds) and records every write's start and end, the
 * writes and the function code in flight.
 */
import type { Context } from "../src/context.js";
import type { SpecObject, SpecPlural } from "../src/spec/documents.js";
import type { Action, PlanItem } from "../src/spec/plan.js";
import type { StoredObject } from "../src/spec/state.js";

const KIND: Record<string, string> = {
  environments: "Environment",
  packages: "Package",
  functions: "Function",
  httptriggers: "HttpTrigger",
  timetriggers: "TimeTrigger",
};

export function stored(plural: string, name: string, spec: Record<string, unknown>, revision = 1) {
  return {
    apiVersion: "fizz.dev/v1",
    kind: KIND[plural]!,
    metadata: { namespace: "default", name, revision, labels: { "fizz.dev/spec": "demo" } },
    spec,
  } as StoredObject;
}

export function item(
  action: Action,
  plural: SpecPlural,
  name: string,
  spec: Record<string, unknown> = {},
  changes: string[] = [],
): PlanItem {
  const desired = {
    plural,
    kind: KIND[plural]!,
    namespace: "default",
    name,
    labels: {},
    spec,
    line: 1,
  } as unknown as SpecObject;
  return {
    action,
    plural,
    kind: KIND[plural]!,
    namespace: "default",
    name,
    changes,
    ...(action === "delete" ? {} : { desired }),
    ...(action === "create" ? {} : { current: stored(plural, name, spec) }),
  };
}

/** The item with a stored spec of its own (item() shares one object with the desired spec). */
export function moved(i: PlanItem, current: Record<string, unknown>): PlanItem {
  i.current!.spec = current;
  return i;
}

type Event = { at: number; op: string; key: string; phase: "start" | "end" | "refused" };

export class FakeRegistry {
  readonly objects = new Map<string, StoredObject>();
  readonly events: Event[] = [];
  inFlight = 0;
  maxInFlight = 0;
  private clock = 0;
  /** Refuse this write (`create functions/f-3`) with this message. */
  refuse = new Map<string, string>();
  /** Milliseconds a write of this key takes (default: a random 1-8). */
  delays = new Map<string, number>();

  /** Bytes of function code in the write requests being answered (base64 decoded). */
  codeInFlight = 0;
  maxCodeInFlight = 0;

  private async write<T>(op: string, key: string, make: () => T, code = 0): Promise<T> {
    this.events.push({ at: this.clock++, op, key, phase: "start" });
    this.inFlight++;
    this.maxInFlight = Math.max(this.maxInFlight, this.inFlight);
    this.codeInFlight += code;
    this.maxCodeInFlight = Math.max(this.maxCodeInFlight, this.codeInFlight);
    try {
      await new Promise((r) => setTimeout(r, this.delays.get(key) ?? 1 + Math.random() * 7));
      const refusal = this.refuse.get(`${op} ${key}`);
      if (refusal) throw new Error(refusal);
      const out = make();
      this.events.push({ at: this.clock++, op, key, phase: "end" });
      return out;
    } catch (err) {
      this.events.push({ at: this.clock++, op, key, phase: "refused" });
      throw err;
    } finally {
      this.inFlight--;
      this.codeInFlight -= code;
    }
  }

  private route(spec: Record<string, unknown>, except: string): void {
    for (const [k, o] of this.objects)
      if (k.startsWith("httptriggers/") && k !== except && o.spec.path === spec.path)
        throw new Error(`route ${String(spec.path)} conflicts with ${k} (ROUTE_CONFLICT)`);
  }

  private check(plural: string, spec: Record<string, unknown>, key: string): void {
    if (plural === "httptriggers" || plural === "timetriggers") {
      if (!this.objects.has(`functions/${String(spec.function)}`))
        throw new Error(`function "${String(spec.function)}" does not exist (UNKNOWN_FUNCTION)`);
      if (plural === "httptriggers") this.route(spec, key);
    }
    const env = spec.environment as string | undefined;
    if (env !== undefined && !this.objects.has(`environments/${env}`))
      throw new Error(`environment "${env}" does not exist (UNKNOWN_ENVIRONMENT)`);
    const pkg = (spec.package as { name?: string } | undefined)?.name;
    if (pkg !== undefined && !this.objects.get(`packages/${pkg}`)?.status)
      throw new Error(`package "${pkg}" has no deployment (PACKAGE_NOT_READY)`);
  }

  readonly client = {
    create: (plural: string, body: { name: string; spec: Record<string, unknown> }) => {
      const key = `${plural}/${body.name}`;
      const code = (body.spec.code as { content?: string } | undefined)?.content;
      const codeBytes = code === undefined ? 0 : Buffer.from(code, "base64").length;
      return this.write(
        "create",
        key,
        () => {
          this.check(plural, body.spec, key);
          const o = stored(plural, body.name, body.spec);
          if (plural === "packages") o.spec.deployment = { digest: "sha256:d1", size: 1 };
          this.objects.set(key, o);
          if (plural === "packages") {
            // Built a little later, as the registry's roll-out does.
            setTimeout(() => {
              o.status = { buildState: "succeeded", deployment: { digest: "sha256:d1", size: 1 } };
            }, 20);
          }
          return o;
        },
        codeBytes,
      );
    },
    update: (plural: string, name: string, body: { spec: Record<string, unknown> }) => {
      const key = `${plural}/${name}`;
      return this.write("update", key, () => {
        const o = this.objects.get(key)!;
        const spec = { ...o.spec, ...body.spec };
        this.check(plural, spec, key);
        const next = stored(plural, name, spec, o.metadata.revision + 1);
        this.objects.set(key, next);
        return next;
      });
    },
    delete: (plural: string, name: string) => {
      const key = `${plural}/${name}`;
      return this.write("delete", key, () => {
        const o = this.objects.get(key);
        this.objects.delete(key);
        return o;
      });
    },
    get: async (plural: string, name: string) => {
      await new Promise((r) => setTimeout(r, 1));
      return this.objects.get(`${plural}/${name}`);
    },
  };

  /** Objects the plan's updates and deletes start from. */
  hold(...items: PlanItem[]): void {
    for (const i of items) this.objects.set(`${i.plural}/${i.name}`, i.current!);
  }

  started(op?: string): string[] {
    return this.events
      .filter((e) => e.phase === "start" && (op === undefined || e.op === op))
      .map((e) => e.key);
  }

  /** When a write ended (or was refused). */
  endOf(key: string): number {
    return this.events.find((e) => e.key === key && e.phase !== "start")!.at;
  }

  startOf(key: string): number {
    return this.events.find((e) => e.key === key && e.phase === "start")!.at;
  }
}

export function contextOf(fake: FakeRegistry): Context {
  const sink = { write: () => true };
  return {
    namespace: "default",
    output: "text",
    registry: fake.client,
    stdout: sink,
    stderr: sink,
  } as unknown as Context;
}
