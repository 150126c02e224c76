/**
 * What `fizz spec validate|apply|destroy` do, from loading the files to the last line printed.
 * Everything that can be refused is refused before the first write: local problems, then the
 * registry's view (references, objects apply would not own), then packing.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DEFAULT_WAIT_SECONDS } from "../build-wait.js";
import type { Context } from "../context.js";
import { ApiError, CliError } from "../errors.js";
import { ApplyFailedError, executePlan, type ItemResult } from "./apply.js";
import { planDestroy } from "./destroy.js";
import type { SpecObject } from "./documents.js";
import { packCanonical, type PackedArchive } from "./files.js";
import { compiledRefusals, orderCompiledSwitches } from "./compiled-switch.js";
import { keepWhatIsUsed } from "./keep.js";
import { APPLY_ORDER, loadSpec, loadSpecIdentity, problemAt, type LoadedSpec } from "./load.js";
import { computePlan, isSharedEnvironment, type PlanItem } from "./plan.js";
import { SpecInvalidError, type SpecProblem } from "./problems.js";
import {
  alsoRefusedJson,
  applyFailure,
  countLine,
  planJson,
  planLine,
  printProblems,
  printResult,
  printResultJson,
  printWarnings,
  problemsJson,
  tally,
} from "./report.js";
import { checkAgainstState, readState, type RegistryState } from "./state.js";

export type Env = Record<string, string | undefined>;

export interface ApplyFlags {
  dryRun?: boolean;
  prune?: boolean;
  waitTimeout: number;
  /** Writes in flight at once (apply-order.ts); default DEFAULT_PARALLEL. */
  parallel?: number;
}

async function load(ctx: Context, dirs: string[], env: Env): Promise<LoadedSpec> {
  const loaded = await loadSpec({
    dirs,
    env,
    namespace: ctx.namespace,
    codeMaxBytes: ctx.codeMaxBytes,
  });
  if (!loaded.spec) fail(ctx, loaded.problems, "nothing was applied");
  return loaded.spec;
}

function fail(ctx: Context, problems: SpecProblem[], what: string): never {
  printProblems(ctx, problems);
  if (ctx.output === "json")
    printResultJson(ctx, { valid: false, problems: problemsJson(problems) });
  throw new SpecInvalidError(problems, what);
}

export async function validate(ctx: Context, dirs: string[], env: Env): Promise<void> {
  const loaded = await loadSpec({
    dirs,
    env,
    namespace: ctx.namespace,
    codeMaxBytes: ctx.codeMaxBytes,
  });
  if (!loaded.spec) fail(ctx, loaded.problems, "fix them and validate again");
  const spec = loaded.spec;
  // References outside the spec and name clashes can only be checked by asking the registry.
  let warnings: string[] = [];
  let checked = true;
  let state: RegistryState | undefined;
  try {
    state = await readState(ctx, spec.namespaces, statePlurals(spec));
    const found = checkAgainstState(spec, state, (o, existing) =>
      isSharedEnvironment(o, spec.name, existing),
    );
    if (found.problems.length > 0) fail(ctx, found.problems, "apply would refuse to run");
    warnings = found.warnings;
  } catch (err) {
    if (err instanceof SpecInvalidError || !(err instanceof CliError)) throw err;
    checked = false;
    const refs = spec.external.filter((r) => r.required);
    warnings = [
      `not checked against the registry (${err instanceof ApiError ? err.describe() : err.message}): ` +
        (refs.length > 0
          ? `apply needs ${refs.map((r) => `${r.plural.replace(/s$/, "")} "${r.namespace}/${r.name}"`).join(", ")} to exist there`
          : "whether objects of the same names exist there"),
    ];
  }
  // Before a refusal, as apply prints them: offline, what could not be checked still shows.
  printWarnings(ctx, warnings);
  // What apply refuses before any write about compiled runtimes (compiled-switch.ts); offline,
  // only what needs no stored object.
  const refused = await compiledRefusals(spec, state, () => packForCheck(ctx, spec));
  if (refused.length > 0) fail(ctx, refused, "apply would refuse to run");
  if (ctx.output === "json") {
    printResultJson(ctx, {
      spec: spec.name,
      valid: true,
      checkedAgainstRegistry: checked,
      objects: spec.objects.map((o) => ({
        kind: o.kind,
        namespace: o.namespace,
        name: o.name,
        file: o.doc.file,
        line: o.line,
      })),
      variables: spec.variables,
      warnings,
    });
    return;
  }
  const vars = spec.variables.map((v) => (v.defaulted ? `${v.name} (its default)` : v.name));
  ctx.stdout.write(
    `spec "${spec.name}" is valid: ${spec.objects.length} object${spec.objects.length === 1 ? "" : "s"} in ${spec.files.length} file${spec.files.length === 1 ? "" : "s"}` +
      (vars.length > 0 ? `; variables used: ${vars.join(", ")}` : "") +
      "\n",
  );
}

function statePlurals(spec: LoadedSpec) {
  return spec.external.some((r) => r.plural === "secrets")
    ? [...APPLY_ORDER, "secrets" as const]
    : APPLY_ORDER;
}

export async function apply(
  ctx: Context,
  dirs: string[],
  opts: ApplyFlags,
  env: Env,
): Promise<void> {
  const spec = await load(ctx, dirs, env);
  const work = await mkdtemp(join(tmpdir(), "fizz-spec-"));
  try {
    const packed = await packAll(ctx, spec, work);
    const namespaces = [...new Set([...spec.namespaces, ctx.namespace])].sort();
    const state = await readState(ctx, namespaces, statePlurals(spec));
    const found = checkAgainstState(spec, state, (o, existing) =>
      isSharedEnvironment(o, spec.name, existing),
    );
    if (found.problems.length > 0) fail(ctx, found.problems, "nothing was applied");
    printWarnings(ctx, found.warnings);
    // A switch to a compiled runtime waits for the functions leaving the environment; one the
    // registry would refuse in any order is refused here, before anything is sent.
    const { plan, problems } = orderCompiledSwitches(
      keepWhatIsUsed(
        computePlan(spec, state, packed, opts.prune ? namespaces : undefined),
        state,
        spec.name,
        namespaces,
      ),
      state,
    );
    if (problems.length > 0) fail(ctx, problems, "nothing was applied");
    const variables = variablesTaken(spec);
    if (ctx.output !== "json" && variables.line) ctx.stdout.write(`${variables.line}\n`);
    if (opts.dryRun) return printPlan(ctx, spec.name, plan, variables.json);
    await run(
      ctx,
      spec.name,
      plan,
      { waitTimeout: opts.waitTimeout, parallel: opts.parallel },
      "apply",
      variables.json,
    );
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

/** The packages packed as apply packs them, only to plan with their digests (then removed). */
async function packForCheck(
  ctx: Context,
  spec: LoadedSpec,
): Promise<Map<SpecObject, PackedArchive>> {
  const work = await mkdtemp(join(tmpdir(), "fizz-spec-"));
  try {
    return await packAll(ctx, spec, work, "apply would refuse to run");
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

/** Every package packed canonically, before anything is sent: its digest decides the plan. */
async function packAll(
  ctx: Context,
  spec: LoadedSpec,
  work: string,
  /** What a package that cannot be packed means: validate applies nothing to begin with. */
  failed = "nothing was applied",
): Promise<Map<SpecObject, PackedArchive>> {
  const packed = new Map<SpecObject, PackedArchive>();
  const problems: SpecProblem[] = [];
  for (const [i, o] of spec.objects.entries()) {
    if (!o.archive || !o.archivePath) continue;
    const field = ["spec", o.archivePath.use, "path"];
    const out = await packCanonical(o.archive, work, `archive-${i}`);
    if ("problem" in out) {
      problems.push(problemAt(o, field, out.problem));
      continue;
    }
    packed.set(o, out.ok);
    if (out.ok.skipped.length > 0) {
      const shown = out.ok.skipped.slice(0, 10).join(", ");
      const more = out.ok.skipped.length > 10 ? ` and ${out.ok.skipped.length - 10} more` : "";
      printWarnings(ctx, [
        `${o.doc.file}:${o.doc.lineOf(field)}: ${o.kind} ${o.name}: left out ${shown}${more} (links pointing outside, or not a file or directory)`,
      ]);
    }
  }
  if (problems.length > 0) fail(ctx, problems, failed);
  return packed;
}

const PLAN_ACTIONS = ["create", "update", "unchanged", "delete"] as const;
const DONE_ACTIONS = ["created", "updated", "unchanged", "deleted"] as const;

/**
 * Which declared variables came from the environment and which fell back to their default:
 * names only, since values may be secrets (a webhook URL with its token).
 */
function variablesTaken(spec: LoadedSpec): {
  line?: string;
  json?: { fromEnvironment: string[]; defaulted: string[] };
} {
  const declared = spec.config.variables;
  if (declared.length === 0) return {};
  const used = new Map(spec.variables.map((v) => [v.name, v.defaulted]));
  const fromEnvironment = declared.filter((n) => used.get(n) === false);
  const defaulted = declared.filter((n) => used.get(n) === true);
  const taken = fromEnvironment.length > 0 ? fromEnvironment.join(", ") : "none";
  const rest = defaulted.length > 0 ? `; defaults used: ${defaulted.join(", ")}` : "";
  return {
    line: `variables taken from the environment: ${taken}${rest}`,
    json: { fromEnvironment, defaulted },
  };
}

function printPlan(ctx: Context, spec: string, plan: PlanItem[], variables?: unknown): void {
  if (ctx.output === "json") {
    printResultJson(ctx, {
      spec,
      dryRun: true,
      ...(variables ? { variables } : {}),
      items: plan.map(planJson),
    });
    return;
  }
  for (const item of plan) ctx.stdout.write(`${planLine(ctx, item)}\n`);
  ctx.stdout.write(
    `${countLine(spec, tally(plan, PLAN_ACTIONS, ["keep"]))} (dry run: nothing was changed)\n`,
  );
}

async function run(
  ctx: Context,
  spec: string,
  plan: PlanItem[],
  how: { waitTimeout: number; parallel?: number | undefined },
  command: "apply" | "destroy",
  variables?: unknown,
) {
  // Through the terminal's status line: packages may be building, their spinners drawn.
  const onResult = (r: ItemResult) => printResult(ctx, r);
  let done: ItemResult[];
  try {
    done = await executePlan(ctx, plan, {
      spec,
      waitTimeoutSeconds: how.waitTimeout,
      ...(how.parallel !== undefined ? { parallel: how.parallel } : {}),
      onResult,
    });
  } catch (err) {
    if (!(err instanceof ApplyFailedError)) throw err;
    const failure = applyFailure(ctx, spec, err, command);
    if (ctx.output === "json") {
      printResultJson(ctx, {
        spec,
        dryRun: false,
        items: err.done,
        failed: { ...planJson(err.item), error: failure.message },
        ...(err.alsoRefused.length > 0 ? { alsoFailed: alsoRefusedJson(err) } : {}),
      });
    }
    throw failure;
  }
  if (ctx.output === "json")
    printResultJson(ctx, { spec, dryRun: false, ...(variables ? { variables } : {}), items: done });
  else ctx.stdout.write(`${countLine(spec, tally(done, DONE_ACTIONS, ["kept"]))}\n`);
}

export async function destroy(
  ctx: Context,
  dirs: string[],
  env: Env,
  dryRun: boolean,
  parallel?: number,
): Promise<void> {
  const identity = await loadSpecIdentity({
    dirs,
    env,
    namespace: ctx.namespace,
    codeMaxBytes: ctx.codeMaxBytes,
  });
  if (identity.name === undefined) fail(ctx, identity.problems, "nothing was deleted");
  const spec = identity.name;
  const namespaces = [...new Set([...identity.namespaces, ctx.namespace])].sort();
  const plan = await planDestroy(ctx, spec, namespaces);
  if (dryRun) return printPlan(ctx, spec, plan);
  if (plan.length === 0 && ctx.output !== "json") {
    ctx.stdout.write(
      `spec "${spec}": nothing labelled fizz.dev/spec=${spec} in namespace${namespaces.length === 1 ? "" : "s"} ${namespaces.join(", ")}\n`,
    );
    return;
  }
  await run(ctx, spec, plan, { waitTimeout: DEFAULT_WAIT_SECONDS, parallel }, "destroy");
}
