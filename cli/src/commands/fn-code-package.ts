/**
 * `fn update --code hello.go` for a compiled environment (Go, C#): the file becomes the source of
 * the package named after the function, the one `fn create --code/--src` makes, never of the package
 * the function runs now: that one may be shared ("lib" of functions a and b), and rebuilding it
 * from one file would move b too. Everything that can be checked is checked before the first
 * write; a package this command created is removed again when the function cannot follow it.
 */
import { BuildFailedError, waitForPackage } from "../build-wait.js";
import type { Context } from "../context.js";
import { ApiError, CliError, withHint } from "../errors.js";
import { uploadArchiveFlags } from "../package-ops.js";
import type { FunctionObject, PackageObject } from "../types.js";
import type { SourceOptions } from "./fn-source.js";

/**
 * Builds `opts.src` (the one file) into package `fnName` for `environment`, then PATCHes the
 * function onto it with the other fields of `spec`. Returns the updated function.
 */
export async function updateWithOwnPackage(
  ctx: Context,
  fnName: string,
  environment: string,
  opts: SourceOptions,
  spec: Record<string, unknown>,
): Promise<FunctionObject> {
  const pkgName = fnName;
  const existing = await packageIfAny(ctx, pkgName);
  if (existing) await checkReusable(ctx, fnName, existing, environment);

  const { spec: upload, awaited } = await uploadArchiveFlags(ctx, opts, existing !== undefined);
  // A one-file source replaces whatever the package held, as `fn create --code` would make it.
  const pkgSpec = { environment, ...upload };
  if (existing) {
    await ctx.registry.update<PackageObject>("packages", pkgName, {
      spec: { source: null, deployment: null, buildCommand: null, ...pkgSpec },
    });
  } else {
    await ctx.registry.create<PackageObject>("packages", { name: pkgName, spec: pkgSpec });
  }
  const undo = async (err: unknown, what: string): Promise<never> => {
    if (existing) {
      throw withHint(
        err,
        `${what} Package "${pkgName}" keeps the new source (fizz pkg info --name ${pkgName}).`,
      );
    }
    const problem = await removePackage(ctx, pkgName);
    throw withHint(
      err,
      problem
        ? `${what} Package "${pkgName}" could not be removed again: ${problem}`
        : `${what} Package "${pkgName}" was removed again.`,
    );
  };

  if (awaited) {
    try {
      await waitForPackage(ctx, pkgName, awaited, opts.waitTimeout);
    } catch (err) {
      const kept = `Function "${fnName}" was not changed.`;
      if (err instanceof BuildFailedError && existing) {
        throw withHint(
          err,
          `${err.hint ?? ""}\n${kept} Package "${pkgName}" keeps the failed build's log (fizz pkg info --name ${pkgName}).`.trim(),
        );
      }
      return undo(err, kept);
    }
  }
  try {
    return await ctx.registry.update<FunctionObject>("functions", fnName, {
      spec: { ...spec, package: { name: pkgName }, code: null },
    });
  } catch (err) {
    return undo(err, `Function "${fnName}" was not changed.`);
  }
}

async function packageIfAny(ctx: Context, name: string): Promise<PackageObject | undefined> {
  try {
    return await ctx.registry.get<PackageObject>("packages", name);
  } catch (err) {
    if (err instanceof ApiError && err.code === "NOT_FOUND") return undefined;
    throw err;
  }
}

/**
 * Package `pkg` (named after the function) may be rebuilt only when no other function runs it,
 * and may change environment only when nothing runs it (the registry refuses that otherwise).
 */
async function checkReusable(
  ctx: Context,
  fnName: string,
  pkg: PackageObject,
  environment: string,
): Promise<void> {
  const name = pkg.metadata.name;
  const users = (await ctx.registry.list<FunctionObject>("functions")).items
    .filter((f) => f.spec.package?.name === name)
    .map((f) => f.metadata.name);
  const others = users.filter((u) => u !== fnName);
  if (others.length > 0) {
    const list = others.map((u) => `"${u}"`).join(", ");
    throw withHint(
      new CliError(
        `package "${name}", which --code would build for function "${fnName}", is used by function${others.length > 1 ? "s" : ""} ${list}`,
      ),
      `Nothing was changed. Build the file into a package of another name and point the function at it: fizz pkg create --name ${fnName}-src --env ${environment} --src <file>, then fizz fn update --name ${fnName} --pkg ${fnName}-src`,
    );
  }
  if (users.length > 0 && pkg.spec.environment !== environment) {
    throw withHint(
      new CliError(
        `package "${name}" is built for environment "${pkg.spec.environment}", and function "${fnName}" runs it there, so it cannot be rebuilt for "${environment}"`,
      ),
      `Nothing was changed. Build the file into a package of another name and point the function at it: fizz pkg create --name ${fnName}-${environment} --env ${environment} --src <file>, then fizz fn update --name ${fnName} --env ${environment} --pkg ${fnName}-${environment}`,
    );
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
