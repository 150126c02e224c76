/**
 * An environment switched to a compiled runtime (Go, .NET) while functions run single source
 * files (`spec.code`) on it: the registry refuses the switch while any such function is stored
 * (services/registry/src/references.ts, checkCompiledUsers), and refuses a function's package
 * until the package has a deployment, which only the environment's builder makes. Switched in
 * place, with the functions moving to source packages of that same environment in the same spec,
 * the writes form a cycle: the image waits for the functions, the functions for their packages'
 * builds, the builds for the image (built before the switch, the old runtime's builder would
 * build them; pointed at a package first, a function would run Go code in a Node runtime until
 * the switch). No order converges without a window where the functions fail, so apply refuses
 * such a plan before any write, saying what to do instead: a new environment for the compiled
 * runtime, which the existing order handles in one function write each (environments, then
 * packages and their builds, then each function moved over with its environment and package).
 */
import { isCompiledRuntime, runtimeOfImage } from "@fizz/events";
import { problemAt } from "./load.js";
import type { PlanItem } from "./plan.js";
import type { SpecProblem } from "./problems.js";
import type { RegistryState } from "./state.js";

/** The stable code of the refusal, in the printed problem and in `-o json`. */
export const COMPILED_SWITCH_BLOCKED = "COMPILED_SWITCH_BLOCKED";

const quoted = (names: string[]) => names.map((n) => `"${n}"`).join(", ");

/** One problem per environment update the registry would refuse on every run; none if all can go. */
export function checkCompiledSwitches(
  plan: readonly PlanItem[],
  state: RegistryState,
): SpecProblem[] {
  const problems: SpecProblem[] = [];
  const planned = new Map(plan.map((i) => [`${i.plural}/${i.namespace}/${i.name}`, i]));
  for (const item of plan) {
    if (item.plural !== "environments" || item.action !== "update" || !item.desired) continue;
    const runtime = runtimeOfImage(String(item.desired.spec.image));
    if (!isCompiledRuntime(runtime)) continue;
    const env = item.name;
    const blockers = state
      .all("functions", item.namespace)
      .filter((f) => f.spec.environment === env && f.spec.code !== undefined)
      .map((f) => f.metadata.name);
    if (blockers.length === 0) continue;
    // What each blocker becomes in this plan decides what the user can do about it.
    const toPackages: string[] = [];
    const keepCode: string[] = [];
    const elsewhere: string[] = [];
    const outside: string[] = [];
    for (const name of blockers) {
      const next = planned.get(`functions/${item.namespace}/${name}`);
      const spec = next?.action === "delete" ? undefined : next?.desired?.spec;
      if (!spec) outside.push(name);
      else if (spec.environment !== env) elsewhere.push(name);
      else if (spec.code !== undefined) keepCode.push(name);
      else toPackages.push(name);
    }
    const newEnv = `${env}-${runtime!}`;
    const why = [
      `environment "${env}" cannot be switched to ${runtime!} (compiled) in place`,
      `functions ${quoted(blockers)} run single source files (spec.code) on it, and the registry refuses the switch while any does`,
    ];
    const todo: string[] = [];
    if (toPackages.length > 0)
      todo.push(
        `${quoted(toPackages)} move to packages of "${env}" in this spec, which only its new builder can build, after the switch: no order of writes avoids a time where they run neither their old code nor their new; give the ${runtime!} runtime a new environment (e.g. "${newEnv}") and point those packages and functions at it: apply creates it, builds the packages with its builder and moves each function over in one write; --prune then deletes "${env}" once nothing uses it`,
      );
    if (keepCode.length > 0)
      todo.push(
        `${quoted(keepCode)} keep spec.code in this spec, which ${runtime!} cannot run: give them a source package (spec.package), or leave "${env}" on its current image`,
      );
    if (elsewhere.length > 0)
      todo.push(
        `${quoted(elsewhere)} move to another environment in this spec, but environments are written before functions: apply their move first with "${env}" on its current image, then the switch`,
      );
    if (outside.length > 0)
      todo.push(
        `${quoted(outside)} ${outside.length === 1 ? "is" : "are"} not in this spec: move ${outside.length === 1 ? "it" : "them"} to a source package (fizz fn update --src) or another environment first`,
      );
    const problem = problemAt(
      item.desired,
      ["spec", "image"],
      `${why.join(": ")}; ${todo.join("; ")}`,
    );
    problems.push({ ...problem, code: COMPILED_SWITCH_BLOCKED });
  }
  return problems;
}
