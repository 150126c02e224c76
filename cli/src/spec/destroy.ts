/**
 * `fizz spec destroy`: every object labelled `fizz.dev/spec=<name>` in the namespaces the spec's
 * documents use (and the command's `-n`). The API has no namespace listing, so a namespace the
 * spec no longer mentions is not searched; listing every namespace would need one.
 */
import type { Context } from "../context.js";
import { keepWhatIsUsed } from "./keep.js";
import { APPLY_ORDER } from "./load.js";
import { deleteItem, type PlanItem } from "./plan.js";
import { readState } from "./state.js";

/**
 * Triggers first, then functions, packages, environments, configmaps: users before used. What
 * objects outside the spec still use is kept (keep.ts).
 */
export async function planDestroy(
  ctx: Context,
  spec: string,
  namespaces: string[],
): Promise<PlanItem[]> {
  const state = await readState(ctx, namespaces, APPLY_ORDER);
  const plan = [...APPLY_ORDER]
    .reverse()
    .flatMap((plural) =>
      namespaces.flatMap((ns) =>
        state.labelled(plural, ns, spec).map((current) => deleteItem(plural, current)),
      ),
    );
  return keepWhatIsUsed(plan, state, spec, namespaces);
}
