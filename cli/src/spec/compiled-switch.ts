/**
 * An environment switched to a compiled runtime (Go, .NET) while functions run single source
 * files (`spec.code`) on it: the registry refuses the switch while any such function is stored
 * (services/registry/src/references.ts, checkCompiledUsers). Environments are written before
 * packages and functions, so the plain order fails on every run. Two cases differ:
 *
 * - Those functions all leave the environment in this spec (another environment, or pruned):
 *   the switch is sound once they are gone, so it moves after their writes, unless a package of
 *   the environment is built in this run: the old runtime's builder would build it.
 * - One stays, moving to a source package of the same environment: a cycle. The image waits for
 *   the function, the function for its package's deployment, the build for the image (built
 *   before the switch, the old runtime's builder would build it; pointed at a package first, the
 *   function would run Go code in a Node runtime until the switch). No order converges without a
 *   window where the function fails, so the plan is refused before any write, saying what to do:
 *   a new environment for the compiled runtime, which the plain order handles in one function
 *   write each (environments, then packages and their builds, then each function moved over).
 *   So is a plan where one keeps `spec.code` or is not this spec's to move.
 *
 * A function the spec writes with `spec.code` onto an environment compiled after the plan (the
 * registry refuses it, references.ts checkCodeRunnable) is refused up front too.
 */
import { isCompiledRuntime, runtimeOfImage } from "@fizz/events";
import type { SpecObject } from "./documents.js";
import type { PackedArchive } from "./files.js";
import { problemAt, type LoadedSpec } from "./load.js";
import { computePlan, type PlanItem } from "./plan.js";
import type { SpecProblem } from "./problems.js";
import { RegistryState } from "./state.js";

/**
 * The stable codes of the refusals, in the printed problem and in `-o json`: an environment's
 * switch to a compiled runtime that its single-file functions block (at its `spec.image`), and a
 * function written with `spec.code` onto an environment that is compiled once the plan's
 * environments are written (at its `spec.code`). The registry answers both VALIDATION_FAILED,
 * told apart only by the field, so the CLI names each on its own.
 */
export const COMPILED_SWITCH_BLOCKED = "COMPILED_SWITCH_BLOCKED";
export const CODE_NEEDS_PACKAGE = "CODE_NEEDS_PACKAGE";

const quoted = (names: string[]) => names.map((n) => `"${n}"`).join(", ");
const keyOf = (i: { plural: string; namespace: string; name: string }) =>
  `${i.plural}/${i.namespace}/${i.name}`;
const writes = (i: PlanItem) => i.action === "create" || i.action === "update";
/** As apply-order.ts groups items into waves: what writes nothing goes with its kind's updates. */
const phase = (i: PlanItem) =>
  i.action === "delete" || i.action === "keep"
    ? "delete"
    : i.action === "create"
      ? "create"
      : "update";

/**
 * The plan with every switch that can wait for its functions moved after them, and a problem
 * for every switch the registry would refuse in any order.
 */
export function orderCompiledSwitches(
  plan: readonly PlanItem[],
  state: RegistryState,
): { plan: PlanItem[]; problems: SpecProblem[] } {
  let out = [...plan];
  const problems: SpecProblem[] = [];
  /** `<ns>/<env>` of the switches refused: their problem names the functions. */
  const named = new Set<string>();
  const planned = new Map(plan.map((i) => [keyOf(i), i]));
  for (const item of plan) {
    if (item.plural !== "environments" || item.action !== "update" || !item.desired) continue;
    const runtime = runtimeOfImage(String(item.desired.spec.image));
    if (!isCompiledRuntime(runtime)) continue;
    const env = item.name;
    const ns = item.namespace;
    const blockers = state
      .all("functions", ns)
      .filter((f) => f.spec.environment === env && f.spec.code !== undefined)
      .map((f) => f.metadata.name);
    if (blockers.length === 0) continue;
    const blocking = new Set(blockers);
    // What each blocker becomes in this plan decides whether the switch can wait for it.
    const groups = {
      toPackages: [] as string[],
      keepCode: [] as string[],
      outside: [] as string[],
    };
    const leaving: PlanItem[] = [];
    for (const name of blockers) {
      const next = planned.get(`functions/${ns}/${name}`);
      const spec = next?.desired?.spec;
      if (next?.action === "delete") leaving.push(next);
      else if (!next || !spec || next.action === "keep") groups.outside.push(name);
      else if (spec.environment !== env) leaving.push(next);
      else if (spec.code !== undefined) groups.keepCode.push(name);
      else groups.toPackages.push(name);
    }
    // Functions written with spec.code onto it would block the switch as much as stored ones.
    for (const i of plan)
      if (
        i.plural === "functions" &&
        i.namespace === ns &&
        writes(i) &&
        i.desired?.spec.environment === env &&
        i.desired.spec.code !== undefined &&
        !blocking.has(i.name)
      )
        groups.keepCode.push(i.name);
    // Builds that need the new builder: the switch cannot wait for the functions leaving.
    const needNew = plan.filter(
      (i) => builds(i) && i.namespace === ns && i.desired?.spec.environment === env,
    );
    const stuck = groups.toPackages.length + groups.keepCode.length + groups.outside.length > 0;
    if (!stuck && needNew.length === 0) {
      out = after(out, item, leaving);
      continue;
    }
    const why = `environment "${env}" cannot be switched to ${runtime!} (compiled) in place: functions ${quoted(blockers)} run single source files (spec.code) on it, and the registry refuses the switch while any does`;
    const todo = hints(env, runtime!, groups, stuck ? [] : leaving, needNew);
    const problem = problemAt(item.desired, ["spec", "image"], `${why}; ${todo.join("; ")}`);
    problems.push({ ...problem, code: COMPILED_SWITCH_BLOCKED });
    named.add(`${ns}/${env}`);
  }
  return { plan: out, problems: [...problems, ...codeOnCompiled(plan, state, named)] };
}

/**
 * The refusals above for `fizz spec validate`, which plans nothing else. With the registry's
 * `state`, exactly apply's (without --prune, which validate has not): the plan is first made
 * without packing, where every source package of the spec counts as rebuilt (a digest that
 * matches none stored), which can only add refusals (a switch waiting for its functions is refused when a
 * package of it is built in the run); only a spec refused that way, with source packages, is
 * packed (`pack`, as apply does) and planned again. Offline (`state` undefined) every object is
 * new, so no switch is seen: what is left is a function with `spec.code` on an environment this
 * spec makes compiled.
 */
export async function compiledRefusals(
  spec: LoadedSpec,
  state: RegistryState | undefined,
  pack: () => Promise<Map<SpecObject, PackedArchive>>,
): Promise<SpecProblem[]> {
  const known = state ?? new RegistryState(new Map());
  const refusals = (packed: Map<SpecObject, PackedArchive>) =>
    orderCompiledSwitches(computePlan(spec, known, packed, undefined), known).problems;
  // A digest no stored archive has: without one, a package stored with no source (a deployment
  // package the spec gives a source) showed no spec.source change, so it did not count as built.
  const sources = spec.objects.filter((o) => o.archivePath?.use === "source");
  const unpacked: PackedArchive = { path: "", digest: "", size: 0, files: 0, skipped: [] };
  const rough = refusals(new Map(sources.map((o) => [o, unpacked])));
  if (rough.length === 0 || state === undefined || sources.length === 0) return rough;
  return refusals(await pack());
}

/** What makes the registry build a package it is sent (packages.ts afterWrite). */
const BUILD_INPUTS = ["spec.source", "spec.buildCommand", "spec.environment"];
/** A package write the registry builds: a source, new or with a build input changed. */
const builds = (i: PlanItem) =>
  i.plural === "packages" &&
  i.desired?.archivePath?.use === "source" &&
  (i.action === "create" ||
    (i.action === "update" && i.changes.some((c) => BUILD_INPUTS.includes(c))));

/**
 * Functions written with `spec.code` onto an environment that is compiled once the plan's
 * environments are written (switched with no single-file function stored on it, created so,
 * or already so): the registry refuses each (references.ts checkCodeRunnable), after the writes
 * before it, so the plan is refused before any. Environments whose switch is refused already
 * name their functions (`named`).
 */
function codeOnCompiled(
  plan: readonly PlanItem[],
  state: RegistryState,
  named: ReadonlySet<string>,
): SpecProblem[] {
  const planned = new Map(plan.map((i) => [keyOf(i), i]));
  const problems: SpecProblem[] = [];
  for (const fn of plan) {
    const spec = fn.desired?.spec;
    if (fn.plural !== "functions" || !writes(fn) || !spec || spec.code === undefined) continue;
    const env = String(spec.environment);
    if (named.has(`${fn.namespace}/${env}`)) continue;
    const item = planned.get(`environments/${fn.namespace}/${env}`);
    const image =
      item?.desired?.spec.image ?? state.get("environments", fn.namespace, env)?.spec.image;
    const runtime = typeof image === "string" ? runtimeOfImage(image) : undefined;
    if (!isCompiledRuntime(runtime)) continue;
    const when = item?.action === "update" ? " (after this apply)" : "";
    const problem = problemAt(
      fn.desired!,
      ["spec", "code"],
      `environment "${env}" runs ${runtime!}${when}, which is compiled and runs no single source file (spec.code), so the registry would refuse this function: give it a source package (spec.package), or another environment`,
    );
    problems.push({ ...problem, code: CODE_NEEDS_PACKAGE });
  }
  return problems;
}

/** What to do about each group of functions that keep the switch from being made. */
function hints(
  env: string,
  runtime: string,
  groups: { toPackages: string[]; keepCode: string[]; outside: string[] },
  leaving: PlanItem[],
  needNew: PlanItem[],
): string[] {
  const todo: string[] = [];
  if (groups.toPackages.length > 0)
    todo.push(
      `${quoted(groups.toPackages)} move to packages of "${env}" in this spec, which only its new builder can build, after the switch: no order of writes avoids a time where they run neither their old code nor their new; give the ${runtime} runtime a new environment (e.g. "${env}-${runtime}") and point those packages and functions at it: apply creates it, builds the packages with its builder and moves each function over in one write; --prune then deletes "${env}" once nothing uses it`,
    );
  if (groups.keepCode.length > 0)
    todo.push(
      `${quoted(groups.keepCode)} keep spec.code in this spec, which ${runtime} cannot run: give them a source package (spec.package), or leave "${env}" on its current image`,
    );
  if (groups.outside.length > 0)
    todo.push(
      `${quoted(groups.outside)} ${groups.outside.length === 1 ? "is" : "are"} not in this spec (or kept by --prune): move ${groups.outside.length === 1 ? "it" : "them"} to a source package (fizz fn update --src) or another environment first`,
    );
  if (leaving.length > 0)
    todo.push(
      `${quoted(leaving.map((i) => i.name))} leave it in this spec, and the switch could wait for them, but packages ${quoted(needNew.map((i) => i.name))} of "${env}" are built in this run, which needs its new builder first: apply with "${env}" on its current image once, then switch it`,
    );
  return todo;
}

/**
 * The plan with `item` moved after the last of `leaving` and the rest of that item's run of one
 * kind and one action, so it is a wave of its own after theirs (apply-order.ts planWaves).
 */
function after(plan: PlanItem[], item: PlanItem, leaving: PlanItem[]): PlanItem[] {
  const rest = plan.filter((i) => i !== item);
  // By a set, not an indexOf per item: a switch left by 10,000 functions scanned the plan each.
  const moving = new Set(leaving);
  let at = -1;
  rest.forEach((i, k) => {
    if (moving.has(i)) at = k;
  });
  const run = rest[at]!;
  const same = (i: PlanItem) => i.plural === run.plural && phase(i) === phase(run);
  while (at + 1 < rest.length && same(rest[at + 1]!)) at++;
  return [...rest.slice(0, at + 1), item, ...rest.slice(at + 1)];
}
