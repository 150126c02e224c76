import { routeProblem, type AnyObject, type FunctionObject, type HttpTrigger } from "@fizz/events";
import type { Logger } from "@fizz/kit";
import type { FunctionLeases, LeaseManager } from "./leases";
import {
  recordOfFunction,
  recordOfTrigger,
  type FunctionRecord,
  type TriggerRecord,
} from "./route-records";
import { Router, type TriggerRule } from "./router";

export type RouteKind = "functions" | "httptriggers";

/** Either record: what the merge rules compare. */
export type Held = FunctionRecord | TriggerRecord;

/** One change to apply: the object itself (absent for a delete) and what identifies it. */
export interface Change {
  kind: RouteKind;
  op: "created" | "updated" | "deleted";
  /** `<ns>/<name>` */
  key: string;
  uid: string;
  revision: number;
  object: AnyObject | undefined;
}

export function isFunction(o: { kind: string }): o is FunctionObject {
  return o.kind === "Function";
}

export function isTrigger(o: { kind: string }): o is HttpTrigger {
  return o.kind === "HttpTrigger";
}

/**
 * The route store's records (routes.ts) and the table compiled from them: a change lands in its
 * map, then the table is built whole or has one route placed again, and each lease state counts
 * the routes that name it. Where the records come from (lists, events, `gateway.sync`) is the
 * store's business; the maps are the store's own, shared with this.
 */
export class RouteTable {
  /** `<ns>/<name>@<uid>:<revision>` of routes left out and already logged (once per revision). */
  private readonly refused = new Set<string>();
  /** A function lost its last route since the lease manager last retained (see `moved`). */
  private released = false;

  constructor(
    private readonly functions: Map<string, FunctionRecord>,
    private readonly triggers: Map<string, TriggerRecord>,
    private readonly leases: LeaseManager,
    private readonly log: Logger,
  ) {}

  /** Newer wins: an event for the same object (uid) at an older revision than we hold is stale. */
  apply(ev: Change): void {
    const map: Map<string, Held> = ev.kind === "functions" ? this.functions : this.triggers;
    const cur = map.get(ev.key);
    const sameObject = cur !== undefined && cur.uid === ev.uid;
    if (ev.op === "deleted") {
      if (sameObject) map.delete(ev.key);
      return;
    }
    if (sameObject && cur.revision >= ev.revision) return;
    const o = ev.object;
    if (ev.kind === "functions" && o && isFunction(o))
      this.functions.set(ev.key, recordOfFunction(o));
    else if (ev.kind === "httptriggers" && o && isTrigger(o))
      this.triggers.set(ev.key, recordOfTrigger(o));
  }

  /** A new table of every route the maps hold; the lease manager then forgets what none names. */
  build(): Router<FunctionLeases> {
    const router = new Router<FunctionLeases>([], []);
    // Counted again from nothing: the new table holds no route yet.
    for (const fl of this.leases.all()) fl.routes = 0;
    for (const key of this.triggers.keys()) this.placeTrigger(router, key);
    for (const key of this.functions.keys()) this.placeFunction(router, key);
    this.released = false;
    this.leases.retain();
    return router;
  }

  /** One route placed again as its map holds it now (one change: see RouteStore.applyNow). */
  place(router: Router<FunctionLeases>, kind: RouteKind, key: string): void {
    if (kind === "functions") this.placeFunction(router, key);
    else this.placeTrigger(router, key);
    if (this.released) {
      this.released = false;
      this.leases.retain();
    }
  }

  /** A trigger's route as its map holds it now: added, replaced, or gone. */
  private placeTrigger(router: Router<FunctionLeases>, key: string): void {
    const t = this.triggers.get(key);
    const rule = t && this.triggerRule(key, t);
    this.moved(rule ? router.setTrigger(rule) : router.removeTrigger(key), rule?.target);
  }

  /** A function's `/function/` route and its lease state's settings, or its removal. */
  private placeFunction(router: Router<FunctionLeases>, key: string): void {
    const f = this.functions.get(key);
    if (!f) {
      const [namespace = "", name = ""] = key.split("/");
      this.moved(router.removeFunction(namespace, name), undefined);
      return;
    }
    const { namespace, name, revision } = f;
    const target = this.leases.target(namespace, name);
    // What lease requests carry as minRevision, and the cap of a queued request's wait.
    if (revision > target.minRevision) target.minRevision = revision;
    target.timeoutMs = Math.max(1, Math.round(f.timeoutSeconds * 1000));
    this.moved(router.setFunction({ namespace, name, target }), target);
  }

  /**
   * One route of the table now points at `after` instead of `before` (the router's answer; either
   * undefined: none). Counted on the lease state itself (`routes`), so the lease manager forgets
   * a function once no route names it (`retain`), as after a rebuild. The table already says
   * what each route points at: a map of routes to function keys beside it, and a count per key,
   * cost ~250 bytes per function at 10,000.
   */
  private moved(before: FunctionLeases | undefined, after: FunctionLeases | undefined): void {
    if (before === after) return;
    if (after) after.routes++;
    if (before && --before.routes === 0) this.released = true;
  }

  /** The trigger's rule, or undefined (logged once per revision) when its route breaks the rules. */
  private triggerRule(key: string, t: TriggerRecord): TriggerRule<FunctionLeases> | undefined {
    // The registry refuses these; one stored anyway (before the rule, or behind its back) is
    // left out rather than matched in a way its author never meant.
    // Only the fields that are set: the rule checker's fields are optional, never undefined.
    const problem = routeProblem({
      ...(t.path !== undefined ? { path: t.path } : {}),
      ...(t.prefix !== undefined ? { prefix: t.prefix } : {}),
    });
    if (problem) {
      const seen = `${key}@${t.uid}:${t.revision}`;
      if (!this.refused.has(seen)) {
        this.refused.add(seen);
        this.log.error(
          { trigger: key, revision: t.revision, err: problem.message },
          "http trigger not served: its route breaks the route rules",
        );
      }
      return undefined;
    }
    // Neither (the schema refuses it): the router would hold nothing, so no route names the function.
    if (t.path === undefined && t.prefix === undefined) return undefined;
    return {
      // The key is `<ns>/<name>`, the trigger's id: one string for both.
      id: key,
      target: this.leases.target(key.slice(0, key.indexOf("/")), t.function),
      host: t.host,
      methods: t.methods,
      path: t.path,
      prefix: t.prefix,
    };
  }
}
