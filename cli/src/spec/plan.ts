/**
 * The difference between a spec and the registry, as a list of writes in the order they can be
 * made. Specs are compared after the schema's defaults (both sides went through the same
 * schemas), code and archives by digest, so a file nobody touched plans as "unchanged" and
 * nothing about it is sent.
 */
import { isDeepStrictEqual } from "node:util";
import { SPEC_LABEL, type SpecObject, type SpecPlural } from "./documents.js";
import type { PackedArchive } from "./files.js";
import { APPLY_ORDER, TRIGGER_PLURALS, type LoadedSpec } from "./load.js";
import type { RegistryState, StoredObject } from "./state.js";

/** `keep`: a deletion not made, since something staying uses the object (keep.ts). */
export type Action = "create" | "update" | "unchanged" | "delete" | "keep";

export interface PlanItem {
  action: Action;
  plural: SpecPlural;
  kind: string;
  namespace: string;
  name: string;
  /** What differs, for an update: `spec.code`, `spec.maxInstances`, `labels`. */
  changes: string[];
  desired?: SpecObject;
  current?: StoredObject;
  /** A package's archive, packed canonically. */
  packed?: PackedArchive;
  /** Why an object is kept: `used by function hello-x (not in this spec)`. */
  reason?: string;
}

/** Fields compared on their own: their stored form is not what the spec writes. */
const SPECIAL_FIELDS: Partial<Record<SpecPlural, string[]>> = {
  functions: ["code", "package"],
  packages: ["source", "deployment"],
};

export function desiredLabels(o: SpecObject, spec: string): Record<string, string> {
  return { ...o.labels, [SPEC_LABEL]: spec };
}

/**
 * Deletions of triggers come first (a trigger renamed in the spec keeps its route: the old one
 * has to be gone before the new one is created, or the two conflict), then creates and updates
 * in dependency order (within a kind, updates before creates), then the other deletions,
 * backwards, once nothing in the spec uses them.
 */
export function computePlan(
  spec: LoadedSpec,
  state: RegistryState,
  packed: Map<SpecObject, PackedArchive>,
  /** Where `--prune` looks for objects the spec no longer has; undefined: no pruning. */
  pruneNamespaces: string[] | undefined,
): PlanItem[] {
  const wanted = new Set(spec.objects.map((o) => `${o.plural}/${o.namespace}/${o.name}`));
  const pruned: PlanItem[] = [];
  if (pruneNamespaces) {
    for (const plural of APPLY_ORDER)
      for (const ns of pruneNamespaces)
        for (const current of state.labelled(plural, ns, spec.name)) {
          if (wanted.has(`${plural}/${ns}/${current.metadata.name}`)) continue;
          pruned.push(deleteItem(plural, current));
        }
  }
  const isTrigger = (i: PlanItem) => (TRIGGER_PLURALS as readonly string[]).includes(i.plural);
  const writes = byKindUpdatesFirst(
    spec.objects.map((o) => planObject(o, spec.name, state, packed.get(o))),
  );
  return [
    ...pruned.filter(isTrigger).reverse(),
    ...writes,
    ...pruned.filter((i) => !isTrigger(i)).reverse(),
  ];
}

/**
 * Kinds in APPLY_ORDER, and within a kind the creates last: an update can free what a create
 * needs (a route moved from trigger X to a new trigger Y conflicts until X has let it go), and
 * the other way round never happens, since a create frees nothing. Stable otherwise.
 */
function byKindUpdatesFirst(items: PlanItem[]): PlanItem[] {
  const rank = (i: PlanItem) => APPLY_ORDER.indexOf(i.plural) * 2 + (i.action === "create" ? 1 : 0);
  return items
    .map((item, at) => ({ item, at }))
    .sort((a, b) => rank(a.item) - rank(b.item) || a.at - b.at)
    .map((x) => x.item);
}

export function deleteItem(plural: SpecPlural, current: StoredObject): PlanItem {
  return {
    action: "delete",
    plural,
    kind: current.kind,
    namespace: current.metadata.namespace,
    name: current.metadata.name,
    changes: [],
    current,
  };
}

function planObject(
  o: SpecObject,
  specName: string,
  state: RegistryState,
  packed: PackedArchive | undefined,
): PlanItem {
  const base = {
    plural: o.plural,
    kind: o.kind,
    namespace: o.namespace,
    name: o.name,
    desired: o,
    ...(packed ? { packed } : {}),
  };
  const current = state.get(o.plural, o.namespace, o.name);
  if (!current) return { ...base, action: "create", changes: [] };
  if (isSharedEnvironment(o, specName, current))
    return { ...base, current, action: "unchanged", changes: [] };
  const changes = differences(o, specName, current, packed);
  return { ...base, current, action: changes.length > 0 ? "update" : "unchanged", changes };
}

/**
 * An environment another spec (or a hand-run `fizz env create`) made, identical to this spec's:
 * environments are shared infrastructure (the README's hello world creates `python` and `nodejs`,
 * so does every example's spec), so apply uses it as is. It stays theirs: apply neither labels it
 * nor ever prunes or destroys it. One that differs is still refused (state.ts).
 */
export function isSharedEnvironment(
  o: SpecObject,
  specName: string,
  current: StoredObject,
): boolean {
  if (o.plural !== "environments") return false;
  if (current.metadata.labels?.[SPEC_LABEL] === specName) return false;
  const changes = differences(o, specName, current, undefined);
  return changes.length === 1 && changes[0] === "labels";
}

export function differences(
  o: SpecObject,
  specName: string,
  current: StoredObject,
  packed: PackedArchive | undefined,
): string[] {
  const changes: string[] = [];
  if (!isDeepStrictEqual(desiredLabels(o, specName), current.metadata.labels ?? {}))
    changes.push("labels");
  const special = SPECIAL_FIELDS[o.plural] ?? [];
  const keys = new Set([...Object.keys(o.spec), ...Object.keys(current.spec)]);
  for (const key of [...keys].sort()) {
    if (special.includes(key)) continue;
    if (!isDeepStrictEqual(o.spec[key], current.spec[key])) changes.push(`spec.${key}`);
  }
  if (o.plural === "functions") changes.push(...codeChanges(o, current));
  if (o.plural === "packages" && o.archivePath) {
    const use = o.archivePath.use;
    const stored = current.spec[use] as { digest?: string } | undefined;
    if (stored?.digest !== packed?.digest) changes.push(`spec.${use}`);
    const other = use === "source" ? "deployment" : "source";
    if (current.spec[other] !== undefined) changes.push(`spec.${other}`);
  }
  return changes;
}

function codeChanges(o: SpecObject, current: StoredObject): string[] {
  const code = current.spec.code as { filename?: string; digest?: string } | undefined;
  const pkg = current.spec.package as { name?: string } | undefined;
  const wantedPkg = (o.spec.package as { name?: string } | undefined)?.name;
  const changes: string[] = [];
  if (o.codeFile) {
    const filename = (o.spec.code as { filename: string }).filename;
    if (code?.digest !== o.codeFile.digest || code.filename !== filename) changes.push("spec.code");
    if (pkg !== undefined) changes.push("spec.package");
  } else if (wantedPkg !== undefined) {
    if (pkg?.name !== wantedPkg) changes.push("spec.package");
    if (code !== undefined) changes.push("spec.code");
  }
  return changes;
}

/** `function guestbook-get`, with the namespace when it is not the command's. */
export function describeItem(i: { kind: string; namespace: string; name: string }, ns: string) {
  const name = i.namespace === ns ? i.name : `${i.namespace}/${i.name}`;
  return `${i.kind.toLowerCase()} ${name}`;
}
