/**
 * Carrying out a plan: writes that need nothing from each other run together (apply-order.ts:
 * wave by wave, at most `parallel` at once), so every dependency of the plan's order still holds.
 * The registry has no transactions across objects, so apply stops at the first refused write:
 * nothing new starts, the writes already sent finish, what was done stays done (every write is
 * one the next run would make too), what failed is reported, and running apply again converges,
 * since it plans from what the registry holds then.
 */
import { createReadStream } from "node:fs";
import { waitForPackage, type Awaited } from "../build-wait.js";
import type { Context } from "../context.js";
import { CliError } from "../errors.js";
import { describeBuild } from "../package-ops.js";
import type { ArchiveRef, PackageObject } from "../types.js";
import {
  ByteBudget,
  CODE_BYTES_IN_FLIGHT,
  DEFAULT_PARALLEL,
  NotStarted,
  planWaves,
  runWaves,
} from "./apply-order.js";
import type { SpecObject } from "./documents.js";
import { desiredLabels, differences, type PlanItem } from "./plan.js";
import { inNamespace, type StoredObject } from "./state.js";

export type Done = "created" | "updated" | "unchanged" | "deleted" | "kept";

export interface ItemResult {
  action: Done;
  kind: string;
  namespace: string;
  name: string;
  changes: string[];
  revision?: number;
  /** A package's build, in words (`build succeeded: deployment sha256:…`). */
  detail?: string;
}

/** A write refused alongside the first (it was already running when that one was refused). */
export interface AlsoRefused {
  item: PlanItem;
  reason: unknown;
}

/** The write that failed (the first in plan order, if several running together were refused). */
export class ApplyFailedError extends CliError {
  override name = "ApplyFailedError";

  constructor(
    readonly item: PlanItem,
    /** What was done, in plan order. */
    readonly done: ItemResult[],
    readonly reason: unknown,
    /** Writes never started, in plan order. */
    readonly notTried: PlanItem[] = [],
    readonly alsoRefused: AlsoRefused[] = [],
  ) {
    super(reason instanceof Error ? reason.message : String(reason));
  }
}

export interface ApplyOptions {
  spec: string;
  waitTimeoutSeconds: number;
  /** Writes in flight at once (default DEFAULT_PARALLEL); 1 runs the plan one write at a time. */
  parallel?: number;
  /** Function code in requests at once (default CODE_BYTES_IN_FLIGHT). */
  codeBytesInFlight?: number;
  /**
   * Called for every item done, in plan order (a result that arrives early waits for those
   * before it), so people see progress on a long build and the report reads like the plan.
   */
  onResult(result: ItemResult): void;
}

export async function executePlan(
  ctx: Context,
  items: PlanItem[],
  opts: ApplyOptions,
): Promise<ItemResult[]> {
  const results: Array<ItemResult | undefined> = new Array<ItemResult | undefined>(items.length);
  let shown = 0;
  const runner = new Runner(ctx, items, opts);
  const refused = await runWaves(
    planWaves(items),
    opts.parallel ?? DEFAULT_PARALLEL,
    (index, stopped) => runner.run(items[index]!, stopped),
    (index, result) => {
      results[index] = result;
      for (; shown < items.length && results[shown]; shown++) opts.onResult(results[shown]!);
    },
  );
  const done = results.filter((r): r is ItemResult => r !== undefined);
  if (refused.length === 0) return done;
  // Writes after the refused one that were running with it and were made: reported too.
  for (let i = shown; i < items.length; i++) if (results[i]) opts.onResult(results[i]!);
  const failed = new Set(refused.map((r) => r.index));
  const [first, ...others] = refused;
  throw new ApplyFailedError(
    items[first!.index]!,
    done,
    first!.reason,
    items.filter((_, i) => !results[i] && !failed.has(i)),
    others.map((r) => ({ item: items[r.index]!, reason: r.reason })),
  );
}

class Runner {
  /** Packages known to have a deployment a function can be pointed at. */
  private readonly ready = new Set<string>();
  /** Packages written in this run: the registry rolled their functions to a new revision. */
  private readonly rolled = new Set<string>();
  /** A wait for a package left building, shared by the functions pointed at it. */
  private readonly waits = new Map<string, Promise<unknown>>();
  /** The plan's packages by namespace/name. */
  private readonly packages = new Map<string, PlanItem>();
  private readonly code: ByteBudget;

  constructor(
    private readonly ctx: Context,
    items: PlanItem[],
    private readonly opts: ApplyOptions,
  ) {
    for (const i of items)
      if (i.plural === "packages") this.packages.set(`${i.namespace}/${i.name}`, i);
    this.code = new ByteBudget(opts.codeBytesInFlight ?? CODE_BYTES_IN_FLIGHT);
  }

  /** `stopped`: whether the run stopped at a refusal while this write waited (runWaves). */
  async run(item: PlanItem, stopped: () => boolean = () => false): Promise<ItemResult> {
    const ctx = inNamespace(this.ctx, item.namespace);
    const result = (action: Done, extra: Partial<ItemResult> = {}): ItemResult => ({
      action,
      kind: item.kind,
      namespace: item.namespace,
      name: item.name,
      changes: item.changes,
      ...extra,
    });
    if (item.action === "keep") return result("kept", { detail: item.reason ?? "" });
    if (item.action === "delete") {
      await ctx.registry.delete(item.plural, item.name);
      return result("deleted");
    }
    const o = item.desired;
    if (!o) throw new Error(`plan item ${item.kind} ${item.name} has no desired object`);
    if (item.action === "unchanged") {
      if (o.plural === "packages" && item.current?.status?.deployment) this.ready.add(key(o));
      return result("unchanged", { revision: item.current?.metadata.revision ?? 0 });
    }
    if (o.plural === "functions") await this.packageReady(ctx, o, item);
    // A build can take minutes: a refusal meanwhile means this write is no longer to start.
    if (stopped()) throw new NotStarted();
    let archive: ArchiveRef | undefined;
    let changes = item.changes;
    if (item.packed && (item.action === "create" || changes.includes(`spec.${useOf(o)}`))) {
      archive = await ctx.registry.uploadArchive(useOf(o), createReadStream(item.packed.path));
      if (item.current) {
        // Packed with another zlib than the registry's: the upload says it is the same archive.
        changes = differences(o, this.opts.spec, item.current, { ...item.packed, ...archive });
        if (changes.length === 0) return result("unchanged", { changes });
      }
    }
    let written: StoredObject;
    const sendsCode = item.action === "create" || changes.includes("spec.code");
    const release = await this.code.take(sendsCode ? (o.codeFile?.bytes.length ?? 0) : 0);
    try {
      if (stopped()) throw new NotStarted();
      if (item.action === "create") {
        written = await ctx.registry.create<StoredObject>(o.plural, {
          name: o.name,
          labels: desiredLabels(o, this.opts.spec),
          spec: writeSpec(o, archive),
        });
      } else {
        const current = await this.currentOf(ctx, o, item.current as StoredObject);
        written = await ctx.registry.update<StoredObject>(o.plural, o.name, {
          ...(changes.includes("labels") ? { labels: desiredLabels(o, this.opts.spec) } : {}),
          spec: patchSpec(o, changes, archive),
          revision: current.metadata.revision,
        });
      }
    } finally {
      release();
    }
    const action = item.action === "create" ? "created" : "updated";
    if (o.plural !== "packages" || !rebuilds(item, changes)) {
      return result(action, { changes, revision: written.metadata.revision });
    }
    this.rolled.add(key(o));
    const pkg = await waitForPackage(ctx, o.name, awaitedOf(written), this.opts.waitTimeoutSeconds);
    this.ready.add(key(o));
    return result(action, {
      changes,
      revision: pkg.metadata.revision,
      detail: describeBuild(pkg),
    });
  }

  /**
   * The object to update as planned, except for a function whose package this run wrote: the
   * registry's roll-out gave it a new revision (only `package.deployment` changed, which the plan
   * ignores), so the planned revision would be refused as stale. Anyone else's change still is.
   */
  private async currentOf(
    ctx: Context,
    o: SpecObject,
    planned: StoredObject,
  ): Promise<StoredObject> {
    const pkg = (planned.spec.package as { name?: string } | undefined)?.name;
    if (o.plural !== "functions" || pkg === undefined) return planned;
    if (!this.rolled.has(`${o.namespace}/${pkg}`)) return planned;
    const fresh = await ctx.registry.get<StoredObject>("functions", o.name);
    const rolledOnly =
      fresh.metadata.revision > planned.metadata.revision &&
      differences(o, this.opts.spec, fresh, undefined).join() ===
        differences(o, this.opts.spec, planned, undefined).join();
    return rolledOnly ? fresh : planned;
  }

  /**
   * A function can only be pointed at a package with a deployment (the registry refuses it with
   * PACKAGE_NOT_READY otherwise): one left building by an earlier, interrupted apply is waited for.
   */
  private async packageReady(ctx: Context, fn: SpecObject, item: PlanItem): Promise<void> {
    const name = (fn.spec.package as { name?: string } | undefined)?.name;
    if (name === undefined) return;
    if (item.action === "update" && !item.changes.includes("spec.package")) return;
    const pkgItem = this.packages.get(`${fn.namespace}/${name}`);
    if (!pkgItem?.desired || this.ready.has(key(pkgItem.desired)) || !pkgItem.current) return;
    const k = key(pkgItem.desired);
    let wait = this.waits.get(k);
    if (!wait) {
      wait = waitForPackage(ctx, name, awaitedOf(pkgItem.current), this.opts.waitTimeoutSeconds);
      this.waits.set(k, wait);
    }
    await wait;
    this.ready.add(k);
  }
}

function key(o: SpecObject): string {
  return `${o.namespace}/${o.name}`;
}

function useOf(o: SpecObject): "source" | "deployment" {
  return o.archivePath?.use ?? "deployment";
}

/** A package write that starts a build or a roll-out, whose end the command waits for. */
function rebuilds(item: PlanItem, changes: string[]): boolean {
  if (item.action === "create") return true;
  return changes.some((c) => c !== "labels");
}

function awaitedOf(pkg: StoredObject): Awaited {
  const spec = pkg.spec as unknown as PackageObject["spec"];
  if (spec.source) return { source: spec.source.digest };
  return { deployment: spec.deployment?.digest ?? "" };
}

/** The spec as the API takes it on create: files and archives in their upload forms. */
function writeSpec(o: SpecObject, archive: ArchiveRef | undefined): Record<string, unknown> {
  const spec = { ...o.spec };
  if (o.plural === "functions" && o.codeFile) {
    spec.code = {
      filename: (o.spec.code as { filename: string }).filename,
      content: o.codeFile.bytes.toString("base64"),
    };
  }
  if (o.plural === "packages" && archive) {
    delete spec.source;
    delete spec.deployment;
    spec[useOf(o)] = archive;
  }
  return spec;
}

/**
 * Only what changed: a field the spec no longer sets is sent as null (the registry's default
 * applies again), and unchanged code is not sent again.
 */
function patchSpec(
  o: SpecObject,
  changes: string[],
  archive: ArchiveRef | undefined,
): Record<string, unknown> {
  const full = writeSpec(o, archive);
  const patch: Record<string, unknown> = {};
  for (const change of changes) {
    if (!change.startsWith("spec.")) continue;
    const field = change.slice("spec.".length);
    // Also how a function switches between code and package: the one it leaves goes null.
    patch[field] = full[field] ?? null;
  }
  return patch;
}
