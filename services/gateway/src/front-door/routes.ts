import {
  Codecs,
  FizzError,
  routeProblem,
  type AnyObject,
  type FunctionObject,
  type GatewaySyncRequest,
  type HttpTrigger,
  type ObjectsByPlural,
  type RegistryChanged,
  type Subjects,
} from "@fizz/events";
import {
  followRegistryListing,
  listen,
  request,
  type Logger,
  type NatsConnection,
  type Subscription,
} from "@fizz/kit";
import type { FunctionLeases, LeaseManager } from "./leases";
import { Router, type FunctionRule, type TriggerRule } from "./router";

/**
 * Keeps the compiled route table current: a full `registry.list` of functions and of HTTP
 * triggers at start (retried with back-off until the registry answers) and again after every NATS
 * reconnect (events may have been missed meanwhile), both through kit's `followRegistryListing`,
 * and `registry.changed.*` events in between. The table is served once both kinds are listed.
 *
 * Events of a kind that arrive while that kind's list is in flight are queued and applied on top
 * of it, so a change made during the list is never lost under an older snapshot. Lease invalidation for a changed
 * function happens at once, queued or not: after the event is seen no request may reach old code.
 *
 * The registry's update barrier (`gateway.sync`) may ask about a change before its event arrived
 * (different subjects, no ordering between them): `sync` then applies it from the request itself
 * and a fresh `registry.get`, so the answer "applied" is true whichever came first.
 */
export interface RouteStoreOptions {
  nc: NatsConnection;
  subjects: Subjects;
  sender: string;
  leases: LeaseManager;
  logger: Logger;
  listTimeoutMs?: number;
}

export class RouteStore {
  /** Undefined until both kinds are listed (the gateway is not ready before; see rebuild). */
  router: Router<FunctionLeases> | undefined;
  private readonly functions = new Map<string, FunctionObject>();
  private readonly triggers = new Map<string, HttpTrigger>();
  /** `<ns>/<name>@<uid>:<revision>` of routes left out and already logged (once per revision). */
  private readonly refused = new Set<string>();
  /**
   * Per kind: events held while its list is in flight (from the list's first attempt until it is
   * applied); null when none is. Both start held: nothing is applied before the first list.
   */
  private readonly queued: Record<RouteKind, RegistryChanged[] | null> = {
    functions: [],
    httptriggers: [],
  };
  private readonly listed: Record<RouteKind, boolean> = { functions: false, httptriggers: false };
  private listings:
    Record<RouteKind, { synced: Promise<void>; relist(): Promise<void> }> | undefined;
  private subs: Subscription[] = [];
  private readonly log: Logger;

  constructor(private readonly opts: RouteStoreOptions) {
    this.log = opts.logger.child({ component: "routes" });
  }

  get loaded(): boolean {
    return this.router !== undefined;
  }

  /** A function as this gateway knows it (the bus side checks existence and maxInstances). */
  functionObject(namespace: string, name: string): FunctionObject | undefined {
    return this.functions.get(`${namespace}/${name}`);
  }

  /** Subscribes, then loads; resolves once routes are loaded (or the signal aborts). */
  async start(signal: AbortSignal): Promise<void> {
    const { nc, subjects } = this.opts;
    for (const kind of ["functions", "httptriggers"] as const) {
      this.subs.push(
        listen(
          nc,
          subjects.registryChanged(kind),
          Codecs.registryChanged,
          (ev) => this.onChange(ev),
          { logger: this.log },
        ),
      );
    }
    const follow = <K extends RouteKind>(kind: K, onList: (items: ObjectsByPlural[K][]) => void) =>
      followRegistryListing({
        nc,
        subjects,
        kind,
        sender: this.opts.sender,
        logger: this.log,
        signal,
        ...(this.opts.listTimeoutMs !== undefined ? { timeoutMs: this.opts.listTimeoutMs } : {}),
        onAttempt: () => (this.queued[kind] ??= []),
        onList: (items) => {
          onList(items);
          this.listedKind(kind);
        },
      });
    this.listings = {
      functions: follow("functions", (items) => this.replaceFunctions(items.filter(isFunction))),
      httptriggers: follow("httptriggers", (items) =>
        this.replaceTriggers(items.filter(isTrigger)),
      ),
    };
    await this.reload();
  }

  stop(): void {
    for (const s of this.subs) s.unsubscribe();
    this.subs = [];
  }

  /** Both kinds listed again (a listing in flight is shared); resolves when both are applied. */
  private async reload(): Promise<void> {
    if (!this.listings) return;
    await Promise.all([this.listings.functions.relist(), this.listings.httptriggers.relist()]);
  }

  /** A kind's list is in: the events held meanwhile go on top, then the table is rebuilt. */
  private listedKind(kind: RouteKind): void {
    const queued = this.queued[kind] ?? [];
    this.queued[kind] = null;
    this.listed[kind] = true;
    for (const ev of queued) this.apply(ev);
    if (!this.listed.functions || !this.listed.httptriggers) return; // no table yet: see rebuild
    this.rebuild();
    this.log.info(
      { functions: this.functions.size, triggers: this.triggers.size },
      "routes loaded",
    );
  }

  /**
   * Applies one committed change named by a `gateway.sync` request, unless its event already did.
   * Function updates and deletes drop older leases at once; the route itself is refreshed from
   * `registry.get`. Resolves false when it could not be applied (the registry did not answer).
   */
  async sync(req: GatewaySyncRequest, _signal: AbortSignal): Promise<boolean> {
    const { kind, op, namespace, name, revision } = req;
    if (kind !== "functions" && kind !== "httptriggers") return true;
    if (kind === "functions" && op !== "created")
      this.opts.leases.functionChanged(op, namespace, name, revision);
    if (!this.loaded) {
      // The list in flight may predate the change: let it finish, then check on top of it.
      await this.reload();
      if (!this.loaded) return false;
    }
    const map: Map<string, AnyObject> = kind === "functions" ? this.functions : this.triggers;
    const key = `${namespace}/${name}`;
    const before = map.get(key);
    if (
      op === "deleted"
        ? before === undefined
        : op === "updated" && before !== undefined && before.metadata.revision >= revision
    )
      return true;
    let object: AnyObject | undefined;
    try {
      object = (
        await request(
          this.opts.nc,
          this.opts.subjects.registryGet,
          Codecs.registryGet,
          { kind, namespace, name },
          { sender: this.opts.sender, timeoutMs: this.opts.listTimeoutMs ?? 5000 },
        )
      ).object;
    } catch (err) {
      if (!(err instanceof FizzError && err.code === "NOT_FOUND")) {
        this.log.warn(
          { err: (err as Error).message, kind, namespace, name },
          "sync: registry.get failed",
        );
        return false;
      }
    }
    const now = map.get(key);
    if (object === undefined) {
      // Gone: unless an event put a newer object here while we asked.
      if (now === undefined || now !== before) return true;
      this.applyNow({ kind, op: "deleted", namespace, name, revision, object: now });
      return true;
    }
    if (
      now !== undefined &&
      now.metadata.uid !== object.metadata.uid &&
      now.metadata.createdAt > object.metadata.createdAt
    )
      return true; // a newer incarnation arrived by event meanwhile
    const r = object.metadata.revision;
    this.applyNow({
      kind,
      op: now === undefined ? "created" : "updated",
      namespace,
      name,
      revision: r,
      object,
    });
    if (kind === "functions") this.opts.leases.functionChanged("updated", namespace, name, r);
    return true;
  }

  private applyNow(ev: RegistryChanged & { kind: RouteKind }): void {
    const queued = this.queued[ev.kind];
    if (queued) queued.push(ev);
    else {
      this.apply(ev);
      this.rebuild();
    }
  }

  private onChange(ev: RegistryChanged): void {
    if (ev.kind === "functions")
      this.opts.leases.functionChanged(ev.op, ev.namespace, ev.name, ev.revision);
    if (ev.kind !== "functions" && ev.kind !== "httptriggers") return;
    const queued = this.queued[ev.kind];
    if (queued) {
      queued.push(ev);
      return;
    }
    this.apply(ev);
    this.rebuild();
  }

  /** Newer wins: an event for the same object (uid) at an older revision than we hold is stale. */
  private apply(ev: RegistryChanged): void {
    const map: Map<string, FunctionObject | HttpTrigger> =
      ev.kind === "functions" ? this.functions : this.triggers;
    const key = `${ev.namespace}/${ev.name}`;
    const cur = map.get(key);
    const sameObject = cur !== undefined && cur.metadata.uid === ev.object.metadata.uid;
    if (ev.op === "deleted") {
      if (sameObject) map.delete(key);
      return;
    }
    if (sameObject && cur.metadata.revision >= ev.revision) return;
    if (ev.kind === "functions" && isFunction(ev.object)) map.set(key, ev.object);
    else if (ev.kind === "httptriggers" && isTrigger(ev.object)) map.set(key, ev.object);
  }

  private replaceFunctions(functions: FunctionObject[]): void {
    const leases = this.opts.leases;
    const before = new Set(this.functions.keys());
    this.functions.clear();
    for (const f of functions) {
      const { namespace, name, revision } = f.metadata;
      this.functions.set(`${namespace}/${name}`, f);
      before.delete(`${namespace}/${name}`);
      leases.target(namespace, name);
      leases.functionChanged("updated", namespace, name, revision);
    }
    // Deleted while we were not listening (a reconnect reload).
    for (const key of before) {
      const [ns, name] = key.split("/") as [string, string];
      leases.functionChanged("deleted", ns, name, 1);
    }
  }

  private replaceTriggers(triggers: HttpTrigger[]): void {
    this.triggers.clear();
    for (const t of triggers) this.triggers.set(`${t.metadata.namespace}/${t.metadata.name}`, t);
  }

  /**
   * Compiles the table from both maps; nothing until BOTH kinds have been listed once. This is
   * the only place `router` (and so `loaded`) is set, so the guard here covers every path that
   * gets to it: a list landing, a change event, a `gateway.sync`. A table from one kind alone
   * would be served as ready: every trigger route a 404 with triggers unlisted, or the bus side
   * taking a real function for an unknown one with functions unlisted (an async call
   * dead-lettered as NOT_FOUND). Events of a listed kind meanwhile still go into its map: they
   * are on top of its list, and the first table (built when the second list lands, listedKind)
   * includes them. Keeping that kind's queue held until the other is listed would do the same,
   * but the queue grows for as long as the other list keeps failing (5 s per timed-out attempt,
   * retried until the registry answers), and the hold would have to be kept in listedKind,
   * onChange and applyNow alike; one guard where the table is built cannot be bypassed.
   */
  private rebuild(): void {
    if (!this.listed.functions || !this.listed.httptriggers) return;
    const leases = this.opts.leases;
    const triggerRules: TriggerRule<FunctionLeases>[] = [];
    const functionRules: FunctionRule<FunctionLeases>[] = [];
    const keys = new Set<string>();
    for (const t of this.triggers.values()) {
      const { namespace, name } = t.metadata;
      const s = t.spec;
      // The registry refuses these; one stored anyway (before the rule, or behind its back) is
      // left out rather than matched in a way its author never meant.
      // Only the fields that are set: the rule checker's fields are optional, never undefined.
      const problem = routeProblem({
        ...(s.path !== undefined ? { path: s.path } : {}),
        ...(s.prefix !== undefined ? { prefix: s.prefix } : {}),
      });
      if (problem) {
        const seen = `${namespace}/${name}@${t.metadata.uid}:${t.metadata.revision}`;
        if (!this.refused.has(seen)) {
          this.refused.add(seen);
          this.log.error(
            {
              trigger: `${namespace}/${name}`,
              revision: t.metadata.revision,
              err: problem.message,
            },
            "http trigger not served: its route breaks the route rules",
          );
        }
        continue;
      }
      const target = leases.target(namespace, s.function);
      keys.add(target.key);
      triggerRules.push({
        id: `${namespace}/${name}`,
        target,
        host: s.host,
        methods: s.methods,
        path: s.path,
        prefix: s.prefix,
      });
    }
    for (const f of this.functions.values()) {
      const { namespace, name, revision } = f.metadata;
      const target = leases.target(namespace, name);
      // What lease requests carry as minRevision, and the cap of a queued request's wait.
      if (revision > target.minRevision) target.minRevision = revision;
      target.timeoutMs = Math.max(1, Math.round(f.spec.timeoutSeconds * 1000));
      keys.add(target.key);
      functionRules.push({ namespace, name, target });
    }
    this.router = new Router(triggerRules, functionRules);
    leases.retain(keys);
  }
}

type RouteKind = "functions" | "httptriggers";

function isFunction(o: { kind: string }): o is FunctionObject {
  return o.kind === "Function";
}

function isTrigger(o: { kind: string }): o is HttpTrigger {
  return o.kind === "HttpTrigger";
}
