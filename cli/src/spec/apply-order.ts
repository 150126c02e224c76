/**
 * Which writes of a plan may run at the same time, and running them so. plan.ts orders a plan so
 * that one write after another always works (pruned triggers, then kind by kind in APPLY_ORDER
 * with updates before creates, then the other deletions backwards); everything a write needs
 * (an environment, a package and its build, a function, a freed route) is written by an item of
 * an earlier kind or an earlier action within its kind. So a run of consecutive items of one kind
 * and one action is a wave whose writes need nothing from each other: they run together, and the
 * next wave starts once the whole wave is done, which keeps every dependency the sequential order
 * kept (a trigger is never written before its function, a function never before its package).
 *
 * One exception inside a wave: updates of triggers that claim something unique (an HTTP route, a
 * message queue group) can depend on each other, as when two triggers swap routes or one takes
 * the route another leaves; those run one after another in plan order, in one lane.
 */
import type { PlanItem } from "./plan.js";

/** Writes in flight at once by default: what bench/scale.ts found the registry takes well. */
export const DEFAULT_PARALLEL = 16;
export const MAX_PARALLEL = 256;

/** A lane is plan indexes run one after another; a wave's lanes run side by side. */
export type Lane = number[];
export type Wave = Lane[];

/** Kinds whose updates may free or take what another object of the kind holds (references.ts). */
const CLAIMING: ReadonlySet<string> = new Set(["httptriggers", "mqtriggers"]);

/** What an item does, for grouping: things that write nothing go with the updates of their kind. */
function phase(item: PlanItem): "delete" | "update" | "create" {
  if (item.action === "delete" || item.action === "keep") return "delete";
  if (item.action === "create") return "create";
  return "update";
}

export function planWaves(plan: readonly PlanItem[]): Wave[] {
  const waves: Wave[] = [];
  let key: string | undefined;
  let wave: Wave = [];
  let serial: Lane | undefined;
  plan.forEach((item, index) => {
    const k = `${item.plural}/${phase(item)}`;
    if (k !== key) {
      if (wave.length > 0) waves.push(wave);
      wave = [];
      serial = undefined;
      key = k;
    }
    const claims =
      item.action === "update" &&
      CLAIMING.has(item.plural) &&
      item.changes.some((c) => c.startsWith("spec."));
    if (!claims) {
      wave.push([index]);
    } else if (serial) {
      serial.push(index);
    } else {
      serial = [index];
      wave.push(serial);
    }
  });
  if (wave.length > 0) waves.push(wave);
  return waves;
}

export interface Refused {
  index: number;
  reason: unknown;
}

/**
 * Runs `work` for every index, wave after wave, at most `parallel` at once. At the first refusal
 * nothing new starts (neither another lane nor the rest of a lane); writes already running finish
 * (a request sent cannot be taken back, and its answer says whether it was made). Returns the
 * refusals, in plan order: none when every item was done.
 */
export async function runWaves<R>(
  waves: readonly Wave[],
  parallel: number,
  work: (index: number) => Promise<R>,
  onDone: (index: number, result: R) => void,
): Promise<Refused[]> {
  const refused: Refused[] = [];
  for (const wave of waves) {
    let next = 0;
    const worker = async () => {
      while (refused.length === 0 && next < wave.length) {
        const lane = wave[next++]!;
        for (const index of lane) {
          if (refused.length > 0) return;
          let result: R;
          try {
            result = await work(index);
          } catch (reason) {
            refused.push({ index, reason });
            return;
          }
          onDone(index, result);
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(parallel, wave.length) }, worker));
    if (refused.length > 0) break;
  }
  return refused.sort((a, b) => a.index - b.index);
}
