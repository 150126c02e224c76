import {
  BUILD_LOG_MAX_CHARS,
  FizzError,
  type AnyObject,
  type ArchiveRef,
  type BuildReport,
  type BuildReportReply,
  type PackageObject,
  type PackageSpec,
  type PackageStatus,
} from "@fizz/events";
import type { ArchiveStore } from "@fizz/kit/archive-store";
import type { PackageHost } from "./changes";
import { notFound, packageUsers } from "./references";
import type { StoreReader } from "./store";

/**
 * A package's life: its status (the registry's alone), build requests on FIZZ_BUILDS, builders'
 * reports, and roll-outs. A new deployment (a build succeeded, or `spec.deployment` changed)
 * first reaches every function of the package — each one a normal update, with its change event
 * and the gateways' update barrier — and only then is the package marked succeeded. So a client
 * that sees `buildState: succeeded` for its source knows no request runs the old code any more.
 */
const MESSAGE_MAX = 4096;
/** Roll-out rounds before giving up on functions that keep changing under it. */
const ROLL_ROUNDS = 5;

export class PackageLifecycle {
  constructor(private readonly ops: PackageHost) {}

  /** Inside a PATCH's transaction: the status the new spec implies, and what must hold. */
  async decidePatch(
    r: StoreReader,
    current: PackageObject,
    next: PackageObject,
  ): Promise<PackageObject> {
    const ns = next.metadata.namespace;
    if (next.spec.environment !== current.spec.environment) {
      const users = await packageUsers(r, ns, next.metadata.name);
      if (users.length > 0)
        throw new FizzError(
          "VALIDATION_FAILED",
          `spec.environment: functions ${users.map((f) => `"${f.metadata.name}"`).join(", ")} run this package in environment "${current.spec.environment}"; change them first`,
          { field: "spec.environment" },
        );
    }
    await checkArchivesStored(this.ops.opts.archives, next.spec);
    return { ...next, status: nextPackageStatus(current, next.spec, next.metadata.revision) };
  }

  /** After a committed create or patch: ask for a build, or roll a new deployment out. */
  async afterWrite(before: PackageObject | undefined, pkg: PackageObject): Promise<PackageObject> {
    if (pkg.spec.source && (!before || buildInputsChanged(before.spec, pkg.spec))) {
      await this.requestBuild(pkg);
      return pkg;
    }
    const deployment = pkg.spec.deployment;
    if (deployment && !deploymentApplied(pkg)) {
      return (
        (await this.applyDeployment(
          pkg.metadata.namespace,
          pkg.metadata.name,
          deployment,
          (cur) =>
            cur.kind === "Package" &&
            !cur.spec.source &&
            cur.spec.deployment?.digest === deployment.digest,
          () => compact({ buildState: "succeeded", deployment, buildLog: "" }),
        )) ?? pkg
      );
    }
    return pkg;
  }

  async rebuild(ns: string, name: string): Promise<PackageObject> {
    const updated = await this.ops.commitUpdate("packages", ns, name, (cur) => {
      if (cur.kind !== "Package") return Promise.resolve(undefined);
      if (!cur.spec.source)
        throw new FizzError(
          "VALIDATION_FAILED",
          `package "${ns}/${name}" has no source to build (it was given a deployment)`,
          { field: "spec.source" },
        );
      return Promise.resolve({
        ...cur,
        status: pendingStatus(cur.spec, cur.status, cur.metadata.revision + 1),
      });
    });
    if (!updated) notFound("packages", ns, name);
    await this.requestBuild(updated);
    return updated;
  }

  async report(rep: BuildReport): Promise<BuildReportReply> {
    const { namespace: ns, name } = rep.package;
    // The build this report is about is the package's current one, still under way: same
    // source, asked by the same revision (not an older build command or a superseded rebuild),
    // and not already finished (a redelivered request must not reopen a finished build).
    const fresh = (o: AnyObject): o is PackageObject =>
      o.kind === "Package" &&
      o.spec.source?.digest === rep.sourceDigest &&
      (o.status.buildRevision ?? rep.package.revision) === rep.package.revision &&
      (o.status.buildState === "pending" || o.status.buildState === "running");
    const at = this.ops.now().toISOString();
    const log = tail(rep.log ?? "", BUILD_LOG_MAX_CHARS);
    if (rep.state === "running") {
      const u = await this.ops.commitUpdate("packages", ns, name, (cur) =>
        Promise.resolve(
          fresh(cur)
            ? {
                ...cur,
                status: compact({
                  buildState: "running",
                  sourceDigest: rep.sourceDigest,
                  buildRevision: cur.status.buildRevision,
                  deployment: cur.status.deployment,
                  buildLog: "",
                  startedAt: at,
                }),
              }
            : undefined,
        ),
      );
      return { applied: u !== undefined };
    }
    let message = rep.message;
    if (rep.state === "succeeded") {
      const d = rep.deployment;
      if (d && (await this.ops.opts.archives.has(d.digest))) {
        const pkg = await this.ops.store.get("packages", ns, name);
        if (!pkg || !fresh(pkg)) return { applied: false };
        const done = await this.applyDeployment(ns, name, d, fresh, (cur) =>
          compact({
            buildState: "succeeded",
            sourceDigest: rep.sourceDigest,
            buildRevision: cur.status.buildRevision,
            deployment: d,
            buildLog: log,
            startedAt: cur.status.startedAt,
            finishedAt: at,
          }),
        );
        return { applied: done !== undefined };
      }
      message = d
        ? `the build reported deployment ${d.digest}, which is not in the archive store`
        : "the build reported success without a deployment";
    }
    const u = await this.ops.commitUpdate("packages", ns, name, (cur) =>
      Promise.resolve(
        fresh(cur)
          ? {
              ...cur,
              status: compact({
                buildState: "failed",
                sourceDigest: rep.sourceDigest,
                buildRevision: cur.status.buildRevision,
                // What functions run stays: a failed build never takes a working one away.
                deployment: cur.status.deployment,
                buildLog: log,
                message: (message ?? "build failed").slice(0, MESSAGE_MAX),
                startedAt: cur.status.startedAt,
                finishedAt: at,
              }),
            }
          : undefined,
      ),
    );
    return { applied: u !== undefined };
  }

  /**
   * Rolls `deployment` out to the package's functions, then writes the status `final` gives. A
   * function that got the old deployment meanwhile (created during the roll-out) sends it round
   * again, so the final status is only ever written when every function runs `deployment`.
   * `wanted` says whether the package still asks for this deployment; checked in every write, so
   * a roll-out overtaken by a newer build or deployment stops and never rolls functions back.
   */
  async applyDeployment(
    ns: string,
    name: string,
    deployment: ArchiveRef,
    wanted: (cur: AnyObject) => boolean,
    final: (cur: PackageObject) => PackageStatus,
  ): Promise<PackageObject | undefined> {
    for (let round = 0; round < ROLL_ROUNDS; round++) {
      await this.rollFunctions(ns, name, deployment, wanted);
      let again = false;
      const pkg = await this.ops.commitUpdate("packages", ns, name, async (cur, r) => {
        if (cur.kind !== "Package" || !wanted(cur)) return undefined;
        const stale = (await packageUsers(r, ns, name)).some(
          (f) => f.spec.package?.deployment?.digest !== deployment.digest,
        );
        if (stale) {
          again = true;
          return undefined;
        }
        return { ...cur, status: final(cur) };
      });
      if (!again) return pkg;
    }
    throw new FizzError(
      "UNAVAILABLE",
      `functions of package "${ns}/${name}" kept changing during the roll-out; try again`,
      { retryable: true },
    );
  }

  /** Every function of the package to `deployment`: one update each, then their events and barriers. */
  async rollFunctions(
    ns: string,
    pkg: string,
    deployment: ArchiveRef,
    wanted: (cur: AnyObject) => boolean,
  ): Promise<number> {
    const users = await packageUsers(this.ops.store, ns, pkg);
    const rolled: AnyObject[] = [];
    for (const f of users) {
      if (f.spec.package?.deployment?.digest === deployment.digest) continue;
      const updated = await this.ops.commitUpdate(
        "functions",
        ns,
        f.metadata.name,
        async (cur, r) => {
          if (
            cur.kind !== "Function" ||
            cur.spec.package?.name !== pkg ||
            cur.spec.package.deployment?.digest === deployment.digest
          )
            return undefined;
          // In the same transaction: the package must still ask for this deployment.
          const owner = await r.get("packages", ns, pkg);
          if (!owner || !wanted(owner)) return undefined;
          return { ...cur, spec: { ...cur.spec, package: { name: pkg, deployment } } };
        },
        { quiet: true },
      );
      if (updated) rolled.push(updated);
    }
    // Barriers run side by side: one slow gateway costs one timeout, not one per function.
    await Promise.all(
      rolled.map((object) => this.ops.emit({ kind: "functions", op: "updated", object })),
    );
    return rolled.length;
  }

  /**
   * At start: builds asked for but never reported done are asked for again (a builder that died
   * mid-build simply runs it again), and a deployment whose roll-out was cut short is finished.
   */
  async reconcile(): Promise<{ builds: number; rollouts: number }> {
    let builds = 0;
    let rollouts = 0;
    for (const pkg of await this.ops.store.list("packages")) {
      const state = pkg.status.buildState;
      if (pkg.spec.source && (state === "pending" || state === "running")) {
        await this.ops.opts.builds.request(pkg);
        builds++;
      } else if (pkg.spec.deployment && !deploymentApplied(pkg)) {
        await this.afterWrite(undefined, pkg);
        rollouts++;
      }
    }
    return { builds, rollouts };
  }

  private async requestBuild(pkg: PackageObject): Promise<void> {
    try {
      await this.ops.opts.builds.request(pkg);
    } catch (err) {
      // The package is committed as pending; the next registry start asks again, and so does
      // POST .../rebuild.
      this.ops.opts.logger?.error(
        { err: (err as Error).message, namespace: pkg.metadata.namespace, name: pkg.metadata.name },
        "build request not stored in FIZZ_BUILDS; it is sent again at the next start, or POST .../rebuild",
      );
    }
  }
}

/** The status a spec implies, from the current one (undefined on create). */
export function nextPackageStatus(
  current: PackageObject | undefined,
  spec: PackageSpec,
  revision: number,
): PackageStatus {
  if (spec.source) {
    if (current && !buildInputsChanged(current.spec, spec)) return current.status;
    return pendingStatus(spec, current?.status, revision);
  }
  // A deployment given on create has no function to roll out to yet; on a patch the roll-out
  // (afterWrite) writes succeeded once the functions run it.
  if (!current)
    return compact({ buildState: "succeeded", deployment: spec.deployment, buildLog: "" });
  return current.status;
}

function pendingStatus(
  spec: PackageSpec,
  prev: PackageStatus | undefined,
  revision: number,
): PackageStatus {
  return compact({
    buildState: "pending",
    sourceDigest: spec.source?.digest,
    buildRevision: revision,
    // Functions keep running the last good deployment until the new build succeeds.
    deployment: prev?.deployment,
    buildLog: "",
  });
}

export function buildInputsChanged(a: PackageSpec, b: PackageSpec): boolean {
  return (
    a.source?.digest !== b.source?.digest ||
    a.buildCommand !== b.buildCommand ||
    a.environment !== b.environment
  );
}

function deploymentApplied(pkg: PackageObject): boolean {
  return (
    pkg.status.buildState === "succeeded" &&
    pkg.status.sourceDigest === undefined &&
    pkg.status.deployment?.digest === pkg.spec.deployment?.digest
  );
}

/** The archives a package names must be uploaded (POST .../archives) before it is written. */
export async function checkArchivesStored(
  archives: ArchiveStore,
  spec: PackageSpec,
): Promise<void> {
  const refs = [
    ["spec.source.digest", spec.source],
    ["spec.deployment.digest", spec.deployment],
  ] as const;
  for (const [field, ref] of refs) {
    if (ref && !(await archives.has(ref.digest)))
      throw new FizzError(
        "VALIDATION_FAILED",
        `${field}: archive ${ref.digest} is not uploaded (POST /v1/namespaces/<ns>/archives first)`,
        { field },
      );
  }
}

function tail(text: string, max: number): string {
  return text.length <= max ? text : text.slice(text.length - max);
}

type Loose<T> = { [K in keyof T]?: T[K] | undefined };

/** Drops undefined fields (exactOptionalPropertyTypes: absent, never undefined). */
function compact(
  s: Loose<PackageStatus> & Pick<PackageStatus, "buildState" | "buildLog">,
): PackageStatus {
  return Object.fromEntries(Object.entries(s).filter(([, v]) => v !== undefined)) as PackageStatus;
}
