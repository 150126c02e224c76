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
 * message queue group) can depend on each other, as when one takes the route another leaves;
 * those run one after another, in one lane, each update that leaves a route before the one that
 * takes it (freedFirst), else in plan order. Plan order alone is the files' order: a taker listed
 * before its freer would be refused on every run. Two triggers swapping routes can be made in no
 * order (each waits for the other): the registry refuses one, as it did one write at a time.
 */
import { routeHost } from "@fizz/events";
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
    // Only an update whose route or queue group changes can free or take one: another function
    // or timeout (10,000 triggers pointed at v2) runs side by side.
    const claims =
      item.action === "update" &&
      CLAIMING.has(item.plural) &&
      item.changes.some((c) => c.startsWith("spec.")) &&
      claimOf(item.plural, item.current?.spec)?.what !==
        claimOf(item.plural, item.desired?.spec)?.what;
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
  for (const w of waves)
    for (const [i, lane] of w.entries()) if (lane.length > 1) w[i] = freedFirst(plan, lane);
  return waves;
}

/**
 * What a trigger's spec holds that no other trigger may, as the registry compares it
 * (services/registry/src/route-conflict.ts, trigger-rules.ts): `where` is an HTTP route's host
 * and exact path shape or prefix, or a queue group; `what` adds the methods, or the subject, that
 * decide whether two of one `where` conflict. Ordering two updates that might conflict costs
 * nothing, leaving out one that does would fail: an update whose `what` changes may free its
 * `where` for another.
 */
function claimOf(
  plural: string,
  spec: Record<string, unknown> | undefined,
): { where: string; what: string } | undefined {
  if (!spec) return undefined;
  if (plural === "mqtriggers") {
    if (typeof spec.queueGroup !== "string") return undefined;
    const where = `group ${spec.queueGroup}`;
    return { where, what: `${where} on ${String(spec.subject)}` };
  }
  const host = routeHost(typeof spec.host === "string" ? spec.host : "");
  const prefix = typeof spec.prefix === "string" ? spec.prefix : "/";
  const where =
    typeof spec.path === "string"
      ? `${host} path ${spec.path.replace(/\{[^/{}]*\}/g, "{}")}`
      : `${host} prefix ${prefix.length > 1 ? prefix.replace(/\/+$/, "") || "/" : prefix}`;
  const methods = Array.isArray(spec.methods)
    ? spec.methods.map((m) => String(m).toUpperCase()).sort()
    : [];
  return { where, what: `${where} ${methods.join(",") || "*"}` };
}

/**
 * The lane reordered so that an update leaving a route (or queue group) runs before an update
 * taking it; otherwise plan order. A depth-first walk in plan order, each update after those it
 * waits for; a cycle (a swap) is cut where the walk meets it.
 */
function freedFirst(plan: readonly PlanItem[], lane: Lane): Lane {
  const leaving = new Map<string, number[]>();
  for (const i of lane) {
    const item = plan[i]!;
    const was = claimOf(item.plural, item.current?.spec);
    if (was !== undefined && was.what !== claimOf(item.plural, item.desired?.spec)?.what)
      leaving.set(was.where, [...(leaving.get(was.where) ?? []), i]);
  }
  const waitsFor = (i: number) => {
    const item = plan[i]!;
    const wanted = claimOf(item.plural, item.desired?.spec);
    return wanted === undefined ? [] : (leaving.get(wanted.where) ?? []).filter((j) => j !== i);
  };
  const out: Lane = [];
  const seen = new Set<number>();
  for (const start of lane) {
    if (seen.has(start)) continue;
    // Iterative, so a long chain of moves cannot overflow the stack.
    seen.add(start);
    const stack: Array<{ i: number; deps: number[] }> = [{ i: start, deps: waitsFor(start) }];
    while (stack.length > 0) {
      const top = stack[stack.length - 1]!;
      const dep = top.deps.shift();
      if (dep === undefined) {
        out.push(top.i);
        stack.pop();
      } else if (!seen.has(dep)) {
        seen.add(dep);
        stack.push({ i: dep, deps: waitsFor(dep) });
      }
    }
  }
  return out;
}

/**
 * Thrown by work that waited (for a package's build, for room in the code budget) and found the
 * run stopped meanwhile: its write is not sent, and it counts as not tried, not as refused.
 */
export class NotStarted extends Error {
  constructor() {
    super("not sent: the run stopped at a refusal");
  }
}

export interface Refused {
  index: number;
  reason: unknown;
}

/**
 * Runs `work` for every index, wave after wave, at most `parallel` at once. At the first refusal
 * nothing new starts (neither another lane nor the rest of a lane); writes already running finish
 * (a request sent cannot be taken back, and its answer says whether it was made). Returns the
 * refusals, in plan order: none when every item was done. If `onDone` throws, nothing new starts
 * either, and its error is thrown once the writes in flight have ended: a worker that rejected
 * would end Promise.all at once while the others went on starting writes behind the failure.
 */
export async function runWaves<R>(
  waves: readonly Wave[],
  parallel: number,
  /** `stopped()`: a refusal (or a failed onDone) was seen; check it before sending after a wait. */
  work: (index: number, stopped: () => boolean) => Promise<R>,
  onDone: (index: number, result: R) => void,
): Promise<Refused[]> {
  if (!Number.isInteger(parallel) || parallel < 1)
    throw new RangeError(`parallel must be a whole number of at least 1, not ${parallel}`);
  const refused: Refused[] = [];
  let broken: { error: unknown } | undefined;
  const stopped = () => refused.length > 0 || broken !== undefined;
  for (const wave of waves) {
    let next = 0;
    const worker = async () => {
      while (!stopped() && next < wave.length) {
        const lane = wave[next++]!;
        for (const index of lane) {
          if (stopped()) return;
          let result: R;
          try {
            result = await work(index, stopped);
          } catch (reason) {
            if (!(reason instanceof NotStarted)) refused.push({ index, reason });
            return;
          }
          try {
            onDone(index, result);
          } catch (error) {
            broken ??= { error };
            return;
          }
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(parallel, wave.length) }, worker));
    if (broken) throw broken.error;
    if (refused.length > 0) break;
  }
  return refused.sort((a, b) => a.index - b.index);
}

/**
 * Function code in write requests at once, across the writes in flight: a create or update sends
 * its file inline (base64 inside the JSON body, so about four times its size in memory while the
 * request is built and sent), and `--parallel 256` of 8 MiB files would be gigabytes.
 */
export const CODE_BYTES_IN_FLIGHT = 64 * 1024 * 1024;

/** A budget of bytes taken and given back, first come first served. */
export class ByteBudget {
  private used = 0;
  private readonly waiting: Array<{ n: number; go: () => void }> = [];

  constructor(private readonly total: number) {}

  /** Waits until `n` bytes fit (one larger than the whole budget waits for it to be empty). */
  async take(n: number): Promise<() => void> {
    const want = Math.min(n, this.total);
    if (want > 0 && (this.waiting.length > 0 || this.used + want > this.total))
      await new Promise<void>((go) => this.waiting.push({ n: want, go }));
    else this.used += want;
    let given = false;
    return () => {
      if (given) return;
      given = true;
      this.used -= want;
      while (this.waiting.length > 0 && this.used + this.waiting[0]!.n <= this.total) {
        const next = this.waiting.shift()!;
        this.used += next.n;
        next.go();
      }
    };
  }
}
