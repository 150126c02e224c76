/**
 * Deletions `destroy` and `--prune` must not make: an environment, package, configmap or
 * function that something staying in the registry still uses. Environments are shared between
 * specs (plan.ts, isSharedEnvironment), so spec B may run its functions in the `python` spec A
 * created; deleting it would break B (the registry refuses with IN_USE, and a destroy that fails
 * on every run could never finish). Such an object is kept, with its label: once nothing uses it,
 * the next destroy or prune of the spec that labelled it deletes it.
 */
import { SPEC_LABEL, type SpecPlural } from "./documents.js";
import { TRIGGER_PLURALS } from "./load.js";
import type { PlanItem } from "./plan.js";
import type { RegistryState } from "./state.js";

interface User {
  plural: SpecPlural;
  namespace: string;
  name: string;
  spec: Record<string, unknown>;
  /** Why it stays: not this spec's, kept by this run too, or still in this spec's files. */
  why: "not in this spec" | "kept too" | "still in this spec";
}

/** Which kinds can use an object of `plural`, and whether `spec` (of kind `by`) does. */
function uses(by: SpecPlural, spec: Record<string, unknown>, plural: SpecPlural, name: string) {
  if (plural === "environments")
    return (by === "functions" || by === "packages") && spec.environment === name;
  if (plural === "packages")
    return by === "functions" && (spec.package as { name?: unknown } | undefined)?.name === name;
  if (plural === "configmaps")
    return by === "functions" && ((spec.configmaps as unknown[] | undefined) ?? []).includes(name);
  if (plural === "functions")
    return (TRIGGER_PLURALS as readonly string[]).includes(by) && spec.function === name;
  return false;
}

const USER_PLURALS: readonly SpecPlural[] = ["functions", "packages", ...TRIGGER_PLURALS];

/**
 * The plan with every deletion of a used object turned into a `keep`. Plans delete users before
 * what they use, so one pass in order sees a kept function before its environment.
 */
export function keepWhatIsUsed(
  plan: PlanItem[],
  state: RegistryState,
  spec: string,
  namespaces: string[],
): PlanItem[] {
  const users: User[] = [];
  for (const ns of namespaces)
    for (const plural of USER_PLURALS)
      for (const o of state.all(plural, ns))
        if (o.metadata.labels?.[SPEC_LABEL] !== spec)
          users.push({
            plural,
            namespace: ns,
            name: o.metadata.name,
            spec: o.spec,
            why: "not in this spec",
          });
  for (const i of plan)
    if (i.desired)
      users.push({
        plural: i.plural,
        namespace: i.namespace,
        name: i.name,
        spec: i.desired.spec,
        why: "still in this spec",
      });
  return plan.map((item) => {
    if (item.action !== "delete" || !item.current) return item;
    const by = users.filter(
      (u) => u.namespace === item.namespace && uses(u.plural, u.spec, item.plural, item.name),
    );
    if (by.length === 0) return item;
    users.push({
      plural: item.plural,
      namespace: item.namespace,
      name: item.name,
      spec: item.current.spec,
      why: "kept too",
    });
    return { ...item, action: "keep" as const, reason: `used by ${describeUsers(by)}` };
  });
}

/** `function hello-x, package web (not in this spec)`. */
function describeUsers(users: User[]): string {
  const groups = new Map<string, string[]>();
  for (const u of users) {
    const names = groups.get(u.why) ?? [];
    names.push(`${singular(u.plural)} ${u.name}`);
    groups.set(u.why, names);
  }
  return [...groups].map(([why, names]) => `${names.join(", ")} (${why})`).join("; ");
}

function singular(plural: SpecPlural): string {
  return plural.replace(/s$/, "");
}
