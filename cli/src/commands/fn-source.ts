/**
 * Where a function's code comes from: one file (`--code`), a package built from a source
 * (`--src`), a deployment used as is (`--deploy`) or an existing package (`--pkg`). With --src and
 * --deploy the CLI makes the package itself, named like the function, and waits for its build.
 */
import type { Command } from "commander";
import { isCompiledRuntime, runtimeOfImage } from "@fizz/events";
import { BuildFailedError, DEFAULT_WAIT_SECONDS, waitForPackage } from "../build-wait.js";
import type { Context } from "../context.js";
import { ApiError, withHint } from "../errors.js";
import { collectEnvVars, collectNames, parseSeconds } from "../options.js";
import { checkArchiveFlags, uploadArchiveFlags, type ArchiveFlags } from "../package-ops.js";
import type { Environment, FunctionObject, PackageObject } from "../types.js";

export interface SourceOptions extends ArchiveFlags {
  code?: string;
  pkg?: string;
  waitTimeout: number;
}

export interface ConfigOptions {
  envVar?: Record<string, string>;
  secret?: string[];
  configmap?: string[];
}

const SOURCE_FLAGS = ["--code", "--src", "--deploy", "--pkg"] as const;

/** --src, --deploy, --pkg, --build-cmd, --wait-timeout (--code is declared by create/update). */
export function withSourceOptions(cmd: Command): Command {
  return cmd
    .option("--src <path>", "source package to build: a directory, an archive or one file")
    .option("--deploy <path>", "deployment package used as is: a directory or an archive")
    .option("--pkg <package>", "an existing package (same namespace and environment)")
    .option("--build-cmd <command>", "with --src: build command instead of the default build")
    .option(
      "--wait-timeout <seconds>",
      "how long to wait for the package's build",
      parseSeconds,
      DEFAULT_WAIT_SECONDS,
    );
}

/** --env-var, --secret, --configmap (on update each replaces the whole list; "" clears it). */
export function withConfigOptions(cmd: Command, update: boolean): Command {
  const clear = update ? '; replaces the current ones, "" removes them all' : "";
  return cmd
    .option(
      "--env-var <key=value>",
      `environment variable for the function; repeatable${clear}`,
      collectEnvVars,
    )
    .option(
      "--secret <name>",
      `secret whose keys the function reads as files; repeatable${clear}`,
      collectNames,
    )
    .option(
      "--configmap <name>",
      `configmap the function reads as files; repeatable${clear}`,
      collectNames,
    );
}

/** The fields --env-var/--secret/--configmap set; an empty list or map is sent as null (unset). */
export function configSpec(opts: ConfigOptions, update: boolean): Record<string, unknown> {
  const spec: Record<string, unknown> = {};
  const put = (field: string, value: object | undefined, empty: boolean) => {
    if (value === undefined) return;
    if (!empty) spec[field] = value;
    else if (update) spec[field] = null;
  };
  put("env", opts.envVar, Object.keys(opts.envVar ?? {}).length === 0);
  put("secrets", opts.secret, (opts.secret ?? []).length === 0);
  put("configmaps", opts.configmap, (opts.configmap ?? []).length === 0);
  return spec;
}

/** Usage errors (exit 2): at most one code source (exactly one on create), --build-cmd with --src. */
export function checkSourceFlags(cmd: Command, opts: SourceOptions, create: boolean): void {
  const given = SOURCE_FLAGS.filter((f) => opts[flagKey(f)] !== undefined);
  if (given.length > 1) {
    cmd.error(
      `error: ${given.join(" and ")} exclude each other: give one of ${SOURCE_FLAGS.join(", ")}`,
      {
        exitCode: 2,
      },
    );
  }
  if (create && given.length === 0) {
    cmd.error(
      "error: give the function's code: --code <file>, --src <dir|archive|file>, --deploy <dir|archive> or --pkg <package>",
      { exitCode: 2 },
    );
  }
  if (opts.buildCmd !== undefined && opts.src === undefined) {
    cmd.error("error: --build-cmd needs --src: it is run in the source directory", { exitCode: 2 });
  }
  checkArchiveFlags(cmd, opts, { required: false, buildCmdAlone: false });
}

function flagKey(flag: (typeof SOURCE_FLAGS)[number]): "code" | "src" | "deploy" | "pkg" {
  return flag.slice(2) as "code" | "src" | "deploy" | "pkg";
}

/**
 * `--code hello.go` for an environment whose runtime is compiled (Go, C#): the registry refuses a
 * single source file there (the builder compiles, the warm instance loads the result). When it
 * did, and the environment is indeed compiled, the file goes in as a one-file source package, as
 * `--src hello.go` would, and one line says so: `opts` is changed in place and true returned.
 * Any other refusal returns false (the caller reports it). Other runtimes pay no extra request.
 */
export async function codeAsSourceIfCompiled(
  ctx: Context,
  refusal: unknown,
  environment: string,
  opts: SourceOptions,
): Promise<boolean> {
  const file = opts.code;
  if (file === undefined || !(refusal instanceof ApiError)) return false;
  if (refusal.code !== "VALIDATION_FAILED" || refusal.field !== "spec.code") return false;
  let env: Environment;
  try {
    env = await ctx.registry.get<Environment>("environments", environment);
  } catch {
    return false;
  }
  const runtime = runtimeOfImage(env.spec.image);
  if (!isCompiledRuntime(runtime)) return false;
  opts.src = file;
  delete opts.code;
  ctx.stderr.write(
    `fizz: environment "${environment}" runs ${runtime}, which is compiled: deploying ${file} as a one-file source package (--src ${file})\n`,
  );
  return true;
}

/**
 * `fn create --src/--deploy`: uploads, creates package `name` and waits for its build. Returns a
 * function that removes the package again, for when the function cannot be made after all.
 * A failed build keeps the package, so `fizz pkg info` shows its log; running the command again
 * with fixed sources reuses such a package (failed, never built, used by no function).
 */
export async function createPackageFor(
  ctx: Context,
  name: string,
  environment: string,
  opts: SourceOptions,
): Promise<{ undo: () => Promise<string | undefined> }> {
  const { spec, awaited } = await uploadArchiveFlags(ctx, opts, false);
  await createOrReuse(ctx, name, { environment, ...spec });
  const undo = () => removePackage(ctx, name);
  if (!awaited) return { undo };
  try {
    await waitForPackage(ctx, name, awaited, opts.waitTimeout);
  } catch (err) {
    if (err instanceof BuildFailedError) {
      throw withHint(
        err,
        `The function was not created. Package "${name}" keeps the failed build's log (fizz pkg info --name ${name}); fix the source and run the command again.`,
      );
    }
    const problem = await undo();
    throw withHint(
      err,
      problem
        ? `The function was not created; package "${name}" could not be removed: ${problem}`
        : `The function was not created, and package "${name}" was removed again.`,
    );
  }
  return { undo };
}

/** Creates the package; a leftover of an earlier failed `fn create --src` is updated instead. */
async function createOrReuse(
  ctx: Context,
  name: string,
  spec: Record<string, unknown>,
): Promise<void> {
  try {
    await ctx.registry.create<PackageObject>("packages", { name, spec });
    return;
  } catch (err) {
    if (!(err instanceof ApiError) || err.code !== "ALREADY_EXISTS") throw err;
    const existing = await ctx.registry.get<PackageObject>("packages", name);
    const leftover =
      existing.status?.buildState === "failed" && existing.status.deployment === undefined;
    if (!leftover) {
      throw withHint(
        err,
        `Package "${name}" exists; use --pkg ${name} to run it, or fizz pkg update to change it.`,
      );
    }
    // What this run did not give is unset, so nothing of the failed attempt carries over.
    await ctx.registry.update<PackageObject>("packages", name, {
      spec: { source: null, deployment: null, buildCommand: null, ...spec },
    });
  }
}

/** Best effort; returns why the package could not be deleted, if it could not. */
async function removePackage(ctx: Context, name: string): Promise<string | undefined> {
  try {
    await ctx.registry.delete("packages", name);
    return undefined;
  } catch (err) {
    return err instanceof ApiError ? err.describe() : (err as Error).message;
  }
}

/**
 * `fn update --src/--deploy`: the function's package gets the new archive and the command waits
 * until the registry has moved the function (and every other function using the package) to the
 * new build. A function that still has single-file code gets a package named like it instead;
 * the returned spec fields switch it over.
 */
export async function updatePackageOf(
  ctx: Context,
  fnName: string,
  opts: SourceOptions,
  environment: string | undefined,
): Promise<Record<string, unknown>> {
  const fn = await ctx.registry.get<FunctionObject>("functions", fnName);
  const pkgName = fn.spec.package?.name;
  if (pkgName === undefined) {
    await createPackageFor(ctx, fnName, environment ?? fn.spec.environment, opts);
    return { package: { name: fnName }, code: null };
  }
  const { spec, awaited } = await uploadArchiveFlags(ctx, opts, true);
  await ctx.registry.update<PackageObject>("packages", pkgName, { spec });
  if (awaited) {
    try {
      await waitForPackage(ctx, pkgName, awaited, opts.waitTimeout);
    } catch (err) {
      if (err instanceof BuildFailedError) {
        err.hint = `${err.hint}\nFunction "${fnName}" keeps running the previous build of package "${pkgName}".`;
      }
      throw err;
    }
  }
  return {};
}
