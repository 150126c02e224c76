/**
 * What the registry holds for the namespaces a spec touches: one list per kind and namespace
 * (the API lists sorted by name, and a spec rarely spans more than a namespace or two), read
 * before anything is written so the whole plan is decided on one view.
 */
import { RegistryClient } from "../client.js";
import type { Context } from "../context.js";
import type { ApiObject, PackageStatus } from "../types.js";
import { SPEC_LABEL, type SpecObject, type SpecPlural } from "./documents.js";
import { problemAt, type ExternalRef, type LoadedSpec } from "./load.js";
import type { SpecProblem } from "./problems.js";

export type StoredObject = ApiObject<Record<string, unknown>> & { status?: PackageStatus };

export class RegistryState {
  private readonly byKey = new Map<string, StoredObject>();

  constructor(private readonly lists: Map<string, StoredObject[]>) {
    for (const [key, items] of lists)
      for (const item of items) this.byKey.set(`${key}/${item.metadata.name}`, item);
  }

  get(plural: string, namespace: string, name: string): StoredObject | undefined {
    return this.byKey.get(`${plural}/${namespace}/${name}`);
  }

  all(plural: SpecPlural, namespace: string): StoredObject[] {
    return this.lists.get(`${plural}/${namespace}`) ?? [];
  }

  /** The objects of a kind in a namespace carrying `fizz.dev/spec=<spec>`. */
  labelled(plural: SpecPlural, namespace: string, spec: string): StoredObject[] {
    return (this.lists.get(`${plural}/${namespace}`) ?? []).filter(
      (o) => o.metadata.labels?.[SPEC_LABEL] === spec,
    );
  }
}

/** The context of a command, pointed at another namespace (the spec's objects may span several). */
export function inNamespace(ctx: Context, namespace: string): Context {
  if (namespace === ctx.namespace) return ctx;
  const registry = new RegistryClient({
    baseUrl: ctx.registryUrl,
    namespace,
    fetch: ctx.fetch,
    token: ctx.token,
  });
  return { ...ctx, namespace, registry };
}

export async function readState(
  ctx: Context,
  namespaces: string[],
  plurals: ReadonlyArray<SpecPlural | "secrets">,
): Promise<RegistryState> {
  const lists = new Map<string, StoredObject[]>();
  for (const ns of namespaces) {
    const client = inNamespace(ctx, ns).registry;
    // One namespace at a time, its kinds together: a handful of small reads.
    const results = await Promise.all(
      plurals.map(async (plural) => [plural, await client.list<StoredObject>(plural)] as const),
    );
    for (const [plural, list] of results) lists.set(`${plural}/${ns}`, list.items);
  }
  return new RegistryState(lists);
}

export interface StateCheck {
  problems: SpecProblem[];
  warnings: string[];
}

/**
 * References the spec does not satisfy itself must be in the registry; objects the spec would
 * write must be its own (labelled with its name) or not exist. Apply takes over nothing.
 */
export function checkAgainstState(
  spec: LoadedSpec,
  state: RegistryState,
  /** Objects used as they are without being taken over (plan.ts, isSharedEnvironment). */
  shared: (o: SpecObject, existing: StoredObject) => boolean = () => false,
): StateCheck {
  const out: StateCheck = { problems: [], warnings: [] };
  for (const ref of spec.external) checkReference(ref, state, out);
  for (const o of spec.objects) {
    const existing = state.get(o.plural, o.namespace, o.name);
    if (!existing) continue;
    const owner = existing.metadata.labels?.[SPEC_LABEL];
    if (owner === spec.name || shared(o, existing)) continue;
    out.problems.push(problemAt(o, ["metadata", "name"], notOurs(o, spec.name, owner)));
  }
  return out;
}

function notOurs(o: SpecObject, spec: string, owner: string | undefined): string {
  const what = `${o.kind.toLowerCase()} "${o.name}" already exists in namespace "${o.namespace}"`;
  const whose =
    owner === undefined
      ? `without the label ${SPEC_LABEL}=${spec}`
      : `and belongs to spec "${owner}" (${SPEC_LABEL}=${owner})`;
  return `${what} ${whose}; apply does not take over objects it did not create: delete it, or rename this one`;
}

function checkReference(ref: ExternalRef, state: RegistryState, out: StateCheck): void {
  if (state.get(ref.plural, ref.namespace, ref.name)) return;
  const noun = ref.plural.replace(/s$/, "");
  const message = `${noun} "${ref.name}" is neither in the spec nor in namespace "${ref.namespace}" of the registry`;
  if (ref.required) {
    out.problems.push({
      file: ref.from.doc.file,
      line: ref.line,
      kind: ref.from.kind,
      name: ref.from.name,
      field: ref.field,
      message,
    });
  } else {
    const create =
      ref.plural === "secrets" ? `fizz secret create --name ${ref.name}` : "a ConfigMap document";
    out.warnings.push(
      `${ref.from.doc.file}:${ref.line}: ${ref.from.kind} ${ref.from.name}: ${ref.field}: ${message}; the function fails to start until it exists (${create})`,
    );
  }
}
