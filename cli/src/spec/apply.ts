/**
 * Carrying out a plan, one write at a time, in its order. The registry has no transactions
 * across objects, so apply stops at the first refused write: what was done stays done (every
 * write is one the next run would make too), what failed is reported, and running apply again
 * converges, since it plans from what the registry holds then.
 */
import { createReadStream } from "node:fs";
import { waitForPackage, type Awaited } from "../build-wait.js";
import type { Context } from "../context.js";
import { CliError } from "../errors.js";
import { describeBuild } from "../package-ops.js";
import type { ArchiveRef, PackageObject } from "../types.js";
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

/** The write that failed, after `done`. */
export class ApplyFailedError extends CliError {
  override name = "ApplyFailedError";

  constructor(
    readonly item: PlanItem,
    readonly done: ItemResult[],
    readonly reason: unknown,
  ) {
    super(reason instanceof Error ? reason.message : String(reason));
  }
}

export interface ApplyOptions {
  spec: string;
  waitTimeoutSeconds: number;
  /** Called after every item, so people see progress on a long build. */
  onResult(result: ItemResult): void;
}

export async function executePlan(
  ctx: Context,
  items: PlanItem[],
  opts: ApplyOptions,
): Promise<ItemResult[]> {
  const done: ItemResult[] = [];
  const runner = new Runner(ctx, items, opts);
  for (const item of items) {
    let result: ItemResult;
    try {
      result = await runner.run(item);
    } catch (err) {
      throw new ApplyFailedError(item, done, err);
    }
    done.push(result);
    opts.onResult(result);
  }
  return done;
}

class Runner {
  /** Packages known to have a deployment a function can be pointed at. */
  private readonly ready = new Set<string>();
  /** Packages written in this run: the registry rolled their functions to a new revision. */
  private readonly rolled = new Set<string>();

  constructor(
    private readonly ctx: Context,
    private readonly items: PlanItem[],
    private readonly opts: ApplyOptions,
  ) {}

  async run(item: PlanItem): Promise<ItemResult> {
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
    const pkgItem = this.items.find(
      (i) => i.plural === "packages" && i.namespace === fn.namespace && i.name === name,
    );
    if (!pkgItem?.desired || this.ready.has(key(pkgItem.desired)) || !pkgItem.current) return;
    await waitForPackage(ctx, name, awaitedOf(pkgItem.current), this.opts.waitTimeoutSeconds);
    this.ready.add(key(pkgItem.desired));
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
