/**
 * `fizz spec init|validate|apply|destroy`: an application as YAML files in git. The format is
 * docs/cli.md's "Declarative specs"; this file wires the commands to cli/src/spec/.
 */
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import type { Command } from "commander";
import { isDnsLabel } from "@fizz/events";
import { DEFAULT_WAIT_SECONDS } from "../build-wait.js";
import type { Context, ContextFactory } from "../context.js";
import { ApiError, CliError } from "../errors.js";
import { collect, parseSeconds } from "../options.js";
import { ApplyFailedError, executePlan, type ItemResult } from "../spec/apply.js";
import { planDestroy } from "../spec/destroy.js";
import { DEPLOYMENT_CONFIG, type SpecObject } from "../spec/documents.js";
import { packCanonical, type PackedArchive } from "../spec/files.js";
import {
  APPLY_ORDER,
  loadSpec,
  loadSpecIdentity,
  problemAt,
  type LoadedSpec,
} from "../spec/load.js";
import { computePlan, type PlanItem } from "../spec/plan.js";
import { SpecInvalidError, type SpecProblem } from "../spec/problems.js";
import {
  applyFailure,
  countLine,
  planJson,
  planLine,
  printProblems,
  printResultJson,
  printWarnings,
  problemsJson,
  resultLine,
  tally,
} from "../spec/report.js";
import { checkAgainstState, readState } from "../spec/state.js";

type Env = Record<string, string | undefined>;

interface DirOptions {
  specdir?: string[];
}

interface ApplyOptions extends DirOptions {
  dryRun?: boolean;
  prune?: boolean;
  waitTimeout: number;
}

const CONFIG_FILE = "fizz-deployment-config.yaml";

export function registerSpecCommands(program: Command, context: ContextFactory, env: Env): void {
  const spec = program
    .command("spec")
    .alias("specs")
    .description("declarative specs: an application's objects as YAML files, applied together")
    .addHelpText(
      "after",
      `
Examples:
  fizz spec init --name guestbook          # specs/fizz-deployment-config.yaml
  fizz spec validate -f specs
  fizz spec apply -f specs --dry-run       # what would change; nothing is sent
  fizz spec apply -f specs --prune         # also delete objects dropped from the files
  fizz spec destroy -f specs`,
    );
  const withDirs = (cmd: Command) =>
    cmd.option(
      "-f, --specdir <dir>",
      "directory of *.yaml/*.yml spec files; repeatable (default: specs)",
      collect,
    );

  spec
    .command("init")
    .description(`write <dir>/${CONFIG_FILE}: the spec's name, which labels everything it applies`)
    .option("--name <name>", "the spec's name (default: this directory's name)")
    .option("--dir <dir>", "where the spec files live", "specs")
    .action(async (opts: { name?: string; dir: string }, cmd: Command) => {
      const name = opts.name ?? labelFrom(basename(process.cwd()));
      if (!isDnsLabel(name))
        cmd.error(
          `error: --name "${name}" must be a DNS label (lower-case letters, digits and '-', at most 63)`,
          { exitCode: 2 },
        );
      const ctx = context(cmd);
      await initSpec(ctx, opts.dir, name);
    });

  withDirs(spec.command("validate"))
    .description(
      "check spec files without changing anything (and, if reachable, against the registry)",
    )
    .action(async (opts: DirOptions, cmd: Command) => {
      await validate(context(cmd), dirsOf(opts), env);
    });

  withDirs(spec.command("apply"))
    .description(
      "create, update (and with --prune delete) objects so the registry matches the spec",
    )
    .option("--dry-run", "print the plan; upload and change nothing")
    .option("--prune", "delete objects labelled with this spec that its files no longer have")
    .option(
      "--wait-timeout <seconds>",
      "how long to wait for each package's build",
      parseSeconds,
      DEFAULT_WAIT_SECONDS,
    )
    .action(async (opts: ApplyOptions, cmd: Command) => {
      await apply(context(cmd), opts, env);
    });

  withDirs(spec.command("destroy"))
    .description("delete every object labelled with this spec's name")
    .option("--dry-run", "print what would be deleted; delete nothing")
    .action(async (opts: DirOptions & { dryRun?: boolean }, cmd: Command) => {
      await destroy(context(cmd), dirsOf(opts), env, opts.dryRun === true);
    });
}

function dirsOf(opts: DirOptions): string[] {
  return opts.specdir && opts.specdir.length > 0 ? opts.specdir : ["specs"];
}

/** `My App_2` → `my-app-2`: a directory's name made into a DNS label. */
export function labelFrom(text: string): string {
  const label = text
    .toLowerCase()
    .replace(/[^a-z0-9-]+/g, "-")
    .replace(/-+/g, "-")
    .replace(/^-+/, "")
    .slice(0, 63)
    .replace(/-+$/, "");
  return label === "" ? "app" : label;
}

async function initSpec(ctx: Context, dir: string, name: string): Promise<void> {
  const file = join(dir, CONFIG_FILE);
  const text = `# The spec's name. "fizz spec apply" labels every object it writes fizz.dev/spec=${name};
# --prune and "fizz spec destroy" only ever delete objects carrying that label.
apiVersion: fizz.dev/v1
kind: ${DEPLOYMENT_CONFIG}
metadata:
  name: ${name}
`;
  await mkdir(dir, { recursive: true });
  try {
    // "wx": never overwrite a spec's identity, even one created a moment ago by someone else.
    await writeFile(file, text, { flag: "wx" });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "EEXIST")
      throw new CliError(`${file} already exists; remove it to start a new spec`);
    throw new CliError(`cannot write ${file}: ${(err as Error).message}`);
  }
  if (ctx.output === "json") printResultJson(ctx, { spec: name, file });
  else ctx.stdout.write(`wrote ${file}: spec "${name}"\n`);
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

async function validate(ctx: Context, dirs: string[], env: Env): Promise<void> {
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
  try {
    const state = await readState(ctx, spec.namespaces, statePlurals(spec));
    const found = checkAgainstState(spec, state);
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
  printWarnings(ctx, warnings);
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

async function apply(ctx: Context, opts: ApplyOptions, env: Env): Promise<void> {
  const spec = await load(ctx, dirsOf(opts), env);
  const work = await mkdtemp(join(tmpdir(), "fizz-spec-"));
  try {
    const packed = await packAll(ctx, spec, work);
    const namespaces = [...new Set([...spec.namespaces, ctx.namespace])].sort();
    const state = await readState(ctx, namespaces, statePlurals(spec));
    const found = checkAgainstState(spec, state);
    if (found.problems.length > 0) fail(ctx, found.problems, "nothing was applied");
    printWarnings(ctx, found.warnings);
    const plan = computePlan(spec, state, packed, opts.prune ? namespaces : undefined);
    if (opts.dryRun) return printPlan(ctx, spec.name, plan);
    await run(ctx, spec.name, plan, opts.waitTimeout);
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

/** Every package packed canonically, before anything is sent: its digest decides the plan. */
async function packAll(
  ctx: Context,
  spec: LoadedSpec,
  work: string,
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
  if (problems.length > 0) fail(ctx, problems, "nothing was applied");
  return packed;
}

const PLAN_ACTIONS = ["create", "update", "unchanged", "delete"] as const;
const DONE_ACTIONS = ["created", "updated", "unchanged", "deleted"] as const;

function printPlan(ctx: Context, spec: string, plan: PlanItem[]): void {
  if (ctx.output === "json") {
    printResultJson(ctx, { spec, dryRun: true, items: plan.map(planJson) });
    return;
  }
  for (const item of plan) ctx.stdout.write(`${planLine(ctx, item)}\n`);
  ctx.stdout.write(
    `${countLine(spec, tally(plan, PLAN_ACTIONS))} (dry run: nothing was changed)\n`,
  );
}

async function run(ctx: Context, spec: string, plan: PlanItem[], waitTimeout: number) {
  const onResult = (r: ItemResult) => {
    if (ctx.output !== "json") ctx.stdout.write(`${resultLine(ctx, r)}\n`);
  };
  let done: ItemResult[];
  try {
    done = await executePlan(ctx, plan, { spec, waitTimeoutSeconds: waitTimeout, onResult });
  } catch (err) {
    if (!(err instanceof ApplyFailedError)) throw err;
    const failure = applyFailure(ctx, spec, err, plan);
    if (ctx.output === "json") {
      printResultJson(ctx, {
        spec,
        dryRun: false,
        items: err.done,
        failed: { ...planJson(err.item), error: failure.message },
      });
    }
    throw failure;
  }
  if (ctx.output === "json") printResultJson(ctx, { spec, dryRun: false, items: done });
  else ctx.stdout.write(`${countLine(spec, tally(done, DONE_ACTIONS))}\n`);
}

async function destroy(ctx: Context, dirs: string[], env: Env, dryRun: boolean): Promise<void> {
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
  await run(ctx, spec, plan, DEFAULT_WAIT_SECONDS);
}
