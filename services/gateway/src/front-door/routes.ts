import {
  Codecs,
  FizzError,
  type AnyObject,
  type GatewaySyncRequest,
  type ObjectsByPlural,
  type RegistryChanged,
  type SkippedObject,
  type Subjects,
} from "@fizz/events";
import {
  followRegistryListing,
  listen,
  ListingWindow,
  request,
  type Logger,
  type Named,
  type NatsConnection,
  type Subscription,
} from "@fizz/kit";
import type { FunctionLeases, LeaseManager } from "./leases";
import type { FunctionRecord, TriggerRecord } from "./route-records";
import type { Router } from "./router";
import {
  isFunction,
  isTrigger,
  RouteTable,
  type Change,
  type Held,
  type RouteKind,
} from "./route-table";

/**
 * Keeps the compiled route table current: a full `registry.list` of functions and of HTTP
 * triggers at start (retried with back-off until the registry answers) and again after every NATS
 * reconnect (events may have been missed meanwhile), both through kit's `followRegistryListing`,
 * and `registry.changed.*` events in between. The table is served once both kinds are listed.
 *
 * Every change (an event, a `gateway.sync`) is applied at once, a list in flight or not, so the
 * table says what `gateway.sync` answered. A list and the changes that cross it merge through
 * kit's `ListingWindow` per kind: a change applied while a kind is being listed wins over that
 * list (it neither undoes nor removes it), and an object the list lacks that no change touched was
 * deleted while events were lost, and goes. Lease invalidation for a changed function happens at
 * once too: after the event is seen no request may reach old code.
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
  /** What the table keeps of each object (route-records.ts), not the object itself. */
  private readonly functions = new Map<string, FunctionRecord>();
  private readonly triggers = new Map<string, TriggerRecord>();
  /** The maps' routes compiled (route-table.ts). */
  private readonly table: RouteTable;
  /** Per kind: the changes made while its list is in flight, which win over that list. */
  private readonly windows: Record<RouteKind, ListingWindow> = {
    functions: new ListingWindow(),
    httptriggers: new ListingWindow(),
  };
  private readonly listed: Record<RouteKind, boolean> = { functions: false, httptriggers: false };
  private listings:
    Record<RouteKind, { synced: Promise<void>; relist(): Promise<void> }> | undefined;
  private subs: Subscription[] = [];
  private readonly log: Logger;

  constructor(private readonly opts: RouteStoreOptions) {
    this.log = opts.logger.child({ component: "routes" });
    this.table = new RouteTable(this.functions, this.triggers, opts.leases, this.log);
  }

  get loaded(): boolean {
    return this.router !== undefined;
  }

  /** A function as this gateway knows it (the bus side checks existence and maxInstances). */
  functionRecord(namespace: string, name: string): FunctionRecord | undefined {
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
    const follow = <K extends RouteKind>(kind: K) =>
      followRegistryListing({
        nc,
        subjects,
        kind,
        sender: this.opts.sender,
        logger: this.log,
        signal,
        ...(this.opts.listTimeoutMs !== undefined ? { timeoutMs: this.opts.listTimeoutMs } : {}),
        onAttempt: () => this.windows[kind].begin(),
        onFailure: () => this.windows[kind].abort(),
        onList: (items: ObjectsByPlural[K][], { skipped }) => this.listedKind(kind, items, skipped),
      });
    this.listings = { functions: follow("functions"), httptriggers: follow("httptriggers") };
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

  /**
   * A kind's list is in: merged with what changed while it was in flight (see the class comment),
   * then the table is rebuilt. Listed objects go through the same revision check as events.
   */
  private listedKind(kind: RouteKind, items: AnyObject[], skipped: SkippedObject[]): void {
    const map: Map<string, Held> = kind === "functions" ? this.functions : this.triggers;
    const wanted = items.filter(kind === "functions" ? isFunction : isTrigger);
    const { apply, remove } = this.windows[kind].merge(wanted, keyOf, map.keys(), skipped);
    for (const object of apply) {
      const { namespace, name, uid, revision } = object.metadata;
      const key = keyOf(object);
      const cur = map.get(key);
      const op = cur && cur.uid === uid ? "updated" : "created";
      this.table.apply({ kind, op, key, uid, revision, object });
      if (isFunction(object)) {
        this.opts.leases.target(namespace, name);
        this.opts.leases.functionChanged(op, namespace, name, revision);
      }
    }
    // Deleted while events were lost (a reconnect relist).
    for (const key of remove) {
      const held = map.get(key)!;
      const { uid, revision } = held;
      this.table.apply({ kind, op: "deleted", key, uid, revision, object: undefined });
      if (kind === "functions") {
        const { namespace, name } = held as FunctionRecord;
        this.opts.leases.functionChanged("deleted", namespace, name, 1);
      }
    }
    this.listed[kind] = true;
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
    const map: Map<string, Held> = kind === "functions" ? this.functions : this.triggers;
    const key = `${namespace}/${name}`;
    const before = map.get(key);
    if (
      op === "deleted"
        ? before === undefined
        : before !== undefined &&
          before.revision >= revision &&
          // The same incarnation, already at (or past) this revision: its event got here first,
          // as it does on every write (the registry publishes it before asking). Without the
          // uid only an update can be judged so: a created name held may be an older incarnation.
          (req.uid !== undefined ? before.uid === req.uid : op === "updated")
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
      this.applyNow({ kind, op: "deleted", key, uid: now.uid, revision, object: undefined });
      return true;
    }
    const { uid, revision: r, createdAt } = object.metadata;
    if (now !== undefined && now.uid !== uid && now.createdAt > createdAt) return true; // a newer incarnation arrived by event meanwhile
    // Another incarnation than the one held (its delete missed): revisions start again, and the
    // held one's leases all go, as for its `created` event; as an update, the old revision stayed
    // the minimum (new leases refused) and the old leases at it stayed in use.
    const replaced = now !== undefined && now.uid !== uid;
    this.applyNow({
      kind,
      op: now === undefined ? "created" : "updated",
      key,
      uid,
      revision: r,
      object,
    });
    if (kind === "functions")
      this.opts.leases.functionChanged(replaced ? "created" : "updated", namespace, name, r);
    return true;
  }

  /**
   * One change: its map, then only its own route in the table (a full rebuild per change made
   * every registry write cost O(all routes) here, and the update barrier waits for it).
   */
  private applyNow(ev: Change): void {
    const key = ev.key;
    this.windows[ev.kind].touch(key);
    this.table.apply(ev);
    if (!this.router) return this.rebuild();
    this.table.place(this.router, ev.kind, key);
  }

  private onChange(ev: RegistryChanged): void {
    const { kind, op, namespace, name, revision, object } = ev;
    if (kind === "functions") this.opts.leases.functionChanged(op, namespace, name, revision);
    if (kind !== "functions" && kind !== "httptriggers") return;
    const key = `${namespace}/${name}`;
    this.applyNow({ kind, op, key, uid: object.metadata.uid, revision, object });
  }

  /**
   * Compiles the table from both maps; nothing until BOTH kinds have been listed once. This is
   * the only place `router` (and so `loaded`) is set, so the guard here covers every path that
   * gets to it: a list landing, a change event, a `gateway.sync`. A table from one kind alone
   * would be served as ready: every trigger route a 404 with triggers unlisted, or the bus side
   * taking a real function for an unknown one with functions unlisted (an async call
   * dead-lettered as NOT_FOUND). Changes meanwhile still go into their maps (merged with the
   * lists as ever), and the first table (built when the second list lands, listedKind) includes
   * them. Holding them back instead would need a queue that grows for as long as a list keeps
   * failing, kept in every path alike; one guard where the table is built cannot be bypassed.
   */
  private rebuild(): void {
    if (!this.listed.functions || !this.listed.httptriggers) return;
    this.router = this.table.build();
  }
}

const keyOf = (o: Named) => `${o.metadata.namespace}/${o.metadata.name}`;
