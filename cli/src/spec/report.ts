/** How spec commands talk: one line per object for people, one JSON document for scripts. */
import type { Context } from "../context.js";
import { ApiError, CliError } from "../errors.js";
import { printJson } from "../output.js";
import { statusLineOf } from "../status-line.js";
import type { ApplyFailedError, ItemResult } from "./apply.js";
import type { PlanItem } from "./plan.js";
import { describeItem } from "./plan.js";
import { formatProblem, type SpecProblem } from "./problems.js";

/** `create function hello`, `update function hello: spec.code, labels`. */
export function planLine(ctx: Context, i: PlanItem): string {
  const changes =
    i.action === "update" ? `: ${i.changes.join(", ")}` : i.reason ? `: ${i.reason}` : "";
  return `${i.action} ${describeItem(i, ctx.namespace)}${changes}`;
}

/** `created function hello`, `updated function hello (spec.code; revision 2)`. */
export function resultLine(ctx: Context, r: ItemResult): string {
  const what = `${r.action} ${describeItem(r, ctx.namespace)}`;
  if (r.action === "updated") {
    const detail = r.detail ? `; ${r.detail}` : "";
    return `${what} (${r.changes.join(", ")}; revision ${r.revision ?? "?"}${detail})`;
  }
  if (r.action === "kept") return `${what}: ${r.detail ?? ""}`;
  return r.detail && r.action === "created" ? `${what} (${r.detail})` : what;
}

/**
 * A result as apply prints it while packages may be building: above their spinners, never on
 * the spinners' row (stdout and stderr share the terminal; status-line.ts).
 */
export function printResult(ctx: Context, r: ItemResult): void {
  if (ctx.output === "json") return;
  statusLineOf(ctx.stderr).print(ctx.stdout, `${resultLine(ctx, r)}\n`);
}

export function planJson(i: PlanItem) {
  return {
    action: i.action,
    kind: i.kind,
    namespace: i.namespace,
    name: i.name,
    ...(i.action === "update" ? { changes: i.changes } : {}),
    ...(i.reason !== undefined ? { reason: i.reason } : {}),
  };
}

export function countLine(spec: string, counts: Record<string, number>): string {
  const parts = Object.entries(counts).map(([action, n]) => `${n} ${action}`);
  return `spec "${spec}": ${parts.join(", ")}`;
}

/** Counts of `actions`, then of `rare` ones (objects kept) only when there are any. */
export function tally<T extends { action: string }>(
  items: T[],
  actions: readonly string[],
  rare: readonly string[] = [],
): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const a of actions) counts[a] = items.filter((i) => i.action === a).length;
  for (const a of rare) {
    const n = items.filter((i) => i.action === a).length;
    if (n > 0) counts[a] = n;
  }
  return counts;
}

export function printProblems(ctx: Context, problems: SpecProblem[]): void {
  if (ctx.output === "json") return;
  for (const p of problems) ctx.stderr.write(`${formatProblem(p)}\n`);
}

export function printWarnings(ctx: Context, warnings: string[]): void {
  for (const w of warnings) ctx.stderr.write(`warning: ${w}\n`);
}

/**
 * The error that ends a failed apply: which write failed and why (the registry's code kept),
 * and that what came before it stays done.
 */
export function applyFailure(
  ctx: Context,
  spec: string,
  err: ApplyFailedError,
  command: "apply" | "destroy",
): CliError {
  const reason = reasonText(err.reason);
  const failed = new CliError(
    `${err.item.action} ${describeItem(err.item, ctx.namespace)}: ${reason}`,
  );
  const made = err.done.filter((r) => r.action !== "unchanged" && r.action !== "kept").length;
  const left = err.notTried.filter((i) => i.action !== "unchanged" && i.action !== "keep").length;
  const causeHint = err.reason instanceof CliError && err.reason.hint ? `${err.reason.hint}\n` : "";
  // Destroy's hint names destroy: "apply" would create again what was just deleted.
  const Command = command === "apply" ? "Apply" : "Destroy";
  failed.hint =
    `${causeHint}${alsoRefusedLines(ctx, err)}` +
    `${Command} stopped there: ${made} change${made === 1 ? " was" : "s were"} made before it, ` +
    `${left} more ${left === 1 ? "was" : "were"} not tried. ` +
    `Fix the cause and run "fizz spec ${command}" again for spec "${spec}": it carries on from what the registry holds.`;
  return failed;
}

/** Writes refused while running alongside the first refused one: a few named, the rest counted. */
function alsoRefusedLines(ctx: Context, err: ApplyFailedError): string {
  const shown = err.alsoRefused.slice(0, 3).map((r) => {
    const reason = reasonText(r.reason);
    return `Also refused: ${r.item.action} ${describeItem(r.item, ctx.namespace)}: ${reason}\n`;
  });
  const more = err.alsoRefused.length - shown.length;
  return shown.join("") + (more > 0 ? `... and ${more} more refused writes\n` : "");
}

/** The refused writes besides the first, for `-o json`. */
export function alsoRefusedJson(err: ApplyFailedError) {
  return err.alsoRefused.map((r) => ({
    ...planJson(r.item),
    error: reasonText(r.reason),
  }));
}

/** A refused write's reason: the registry's answer in full, else the error's message. */
function reasonText(reason: unknown): string {
  if (reason instanceof ApiError) return reason.describe();
  return reason instanceof Error ? reason.message : String(reason);
}

export function problemsJson(problems: SpecProblem[]) {
  return problems.map((p) => ({ ...p, text: formatProblem(p) }));
}

export function printResultJson(ctx: Context, value: unknown): void {
  printJson(ctx.stdout, value);
}
