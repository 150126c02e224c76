/** `fizz fn ...`: functions are user code bound to an environment, with their scaling limits. */
import { Option, type Command } from "commander";
import { readCodeFile } from "../code.js";
import { confirm, type Context, type ContextFactory } from "../context.js";
import { ApiError, withHint } from "../errors.js";
import { collectMethods, parseInteger, parseSeconds } from "../options.js";
import { printJson } from "../output.js";
import type { CodeUpload, FunctionObject, FunctionSpec, HttpTrigger } from "../types.js";
import { updateWithOwnPackage } from "./fn-code-package.js";
import {
  checkSourceFlags,
  codeAsSourceIfCompiled,
  configSpec,
  createPackageFor,
  updatePackageOf,
  withConfigOptions,
  withSourceOptions,
  type ConfigOptions,
  type SourceOptions,
} from "./fn-source.js";
import { deleteAction } from "./delete-action.js";
import { fissionFlags, listCommand, withIgnoreNotFound } from "./fission-flags.js";
import { FN_ALIASES, FN_UNSUPPORTED, SPEC_FLAGS } from "./fission-names.js";
import { registerFnLogs } from "./fn-logs.js";
import { registerFnTest } from "./fn-test.js";
import { printList, renderFunction } from "./fn-view.js";
import { describeRoute } from "./route.js";

interface NameOptions {
  name: string;
}

interface SpecOptions extends ConfigOptions {
  env?: string;
  code?: string;
  entrypoint?: string;
  concurrency?: number;
  minInstances?: number;
  maxInstances?: number;
  timeout?: number;
  idleTimeout?: number;
}

interface CreateOptions extends NameOptions, SpecOptions, SourceOptions {
  env: string;
  route?: string;
  prefix?: string;
  method?: string[];
}

type WritableSpec = Partial<Omit<FunctionSpec, "code" | "package">> & {
  code?: CodeUpload | null;
  package?: { name: string } | null;
  [field: string]: unknown;
};

export function registerFnCommands(program: Command, context: ContextFactory): void {
  const fn = program
    .command("fn")
    .alias("function")
    .description("manage functions: your code, the environment it runs in and its limits")
    .addHelpText(
      "after",
      `
Examples:
  fizz fn create --name hello --env node --code hello.mjs --route /hello --method GET
  fizz fn create --name shop --env python --src ./shop --entrypoint main.handle --route /shop
  fizz fn create --name web --env node --src ./web --env-var MODE=prod --secret db
  fizz fn create --name hi --env go --code hello.go   # compiled: built as a one-file package
  fizz fn test --name hello --query 'who=world'
  fizz fn update --name hello --code hello.mjs
  fizz fn update --name shop --src ./shop      # returns once the new build serves every request
  fizz fn get --name hello --code > hello.mjs`,
    );

  const create = withSpecOptions(
    withSourceOptions(
      fn
        .command("create")
        .description(
          "create a function from a code file or a package, optionally with an HTTP route to it",
        )
        .requiredOption("--name <name>", "function name")
        .requiredOption("--env <environment>", "environment to run in (same namespace)")
        .option(
          "--code <file>",
          "the function's source file (one file, no build; for a go or dotnet environment it is built as --src <file>)",
        ),
    ),
    false,
  )
    .option(
      "--route <path>",
      'also create a route (HTTP trigger) named after the function, e.g. "/hello"',
    )
    .addOption(
      new Option(
        "--prefix <path>",
        "instead of --route: a route matching this prefix and everything under it",
      ).conflicts("route"),
    )
    .option(
      "--method <method>",
      "HTTP method the route accepts; repeatable (default: all)",
      collectMethods,
    );
  fissionFlags(create, {
    aliases: { "--url <path>": "--route", ...FN_ALIASES },
    unsupported: { ...FN_UNSUPPORTED, ...SPEC_FLAGS },
    accepted: ["--keepprefix"],
  }).action(async (opts: CreateOptions, cmd: Command) => {
    // commander's .conflicts() runs before the Fission aliases are applied, so `--url /a
    // --prefix /b` would get past it and lose --prefix; checked again here.
    if (opts.route !== undefined && opts.prefix !== undefined) {
      cmd.error(
        "error: option '--prefix <path>' cannot be used with option '--route <path>' (or its Fission name --url)",
        {
          exitCode: 2,
        },
      );
    }
    const route = routeOf(opts);
    if (opts.method && route === undefined) {
      cmd.error("error: --method only applies together with --route or --prefix", {
        exitCode: 2,
      });
    }
    checkSourceFlags(cmd, opts, true);
    const ctx = context(cmd);
    // Read the file before any request, so a typo in the path changes nothing.
    const spec = await specFrom(opts, ctx.codeMaxBytes, false);
    if (opts.pkg !== undefined) spec.package = { name: opts.pkg };
    let created: FunctionObject;
    try {
      created = await createFunction(ctx, opts, spec);
    } catch (err) {
      // A Go or C# environment takes no single source file: the same file as a source package.
      if (spec.code === undefined || !(await codeAsSourceIfCompiled(ctx, err, opts.env, opts)))
        throw err;
      delete spec.code;
      created = await createFunction(ctx, opts, spec);
    }
    if (route === undefined) {
      confirm(ctx, created, `function "${opts.name}" created`);
      return;
    }
    const trigger = await createRoute(ctx, opts.name, route, opts.method);
    if (ctx.output === "json") {
      printJson(ctx.stdout, { items: [created, trigger] });
    } else {
      ctx.stdout.write(`function "${opts.name}" created\n`);
      ctx.stdout.write(`route "${opts.name}" created: ${describeRoute(trigger.spec)}\n`);
    }
  });

  fn.command("get")
    .alias("getmeta")
    .description("show one function, or with --code print its source")
    .requiredOption("--name <name>", "function name")
    .option("--code", "print the function's code (as uploaded) instead of its description")
    .action(async (opts: NameOptions & { code?: boolean }, cmd: Command) => {
      const ctx = context(cmd);
      if (opts.code) {
        ctx.stdout.write(await ctx.registry.getCode(opts.name));
        return;
      }
      const found = await ctx.registry.get<FunctionObject>("functions", opts.name);
      if (ctx.output === "json") printJson(ctx.stdout, found);
      else ctx.stdout.write(renderFunction(ctx, found));
    });

  listCommand(fn, "functions").action(async (_opts: unknown, cmd: Command) => {
    const ctx = context(cmd);
    const list = await ctx.registry.list<FunctionObject>("functions");
    printList(ctx, list.items, list);
  });

  const update = withSpecOptions(
    withSourceOptions(
      fn
        .command("update")
        .description(
          "change a function; only the given fields change (--src/--deploy: its package is rebuilt)",
        )
        .requiredOption("--name <name>", "function name")
        .option("--env <environment>", "environment to run in")
        .option("--code <file>", "new source file (replaces a package)"),
    ),
    true,
  );
  fissionFlags(update, {
    aliases: FN_ALIASES,
    unsupported: { ...FN_UNSUPPORTED, "--spec": SPEC_FLAGS["--spec"] },
    // Fission refuses to rebuild a package other functions share unless forced; fizz always
    // moves every function of the package to the new build.
    accepted: ["-f, --force"],
  }).action(async (opts: NameOptions & SpecOptions & SourceOptions, cmd: Command) => {
    checkSourceFlags(cmd, opts, false);
    const ctx = context(cmd);
    const spec = await specFrom(opts, ctx.codeMaxBytes, true);
    if (spec.code) spec.package = null;
    if (opts.pkg !== undefined) Object.assign(spec, { package: { name: opts.pkg }, code: null });
    try {
      await updateFunction(ctx, cmd, opts, spec);
    } catch (err) {
      if (spec.code === undefined) throw err;
      const envName =
        opts.env ??
        (await ctx.registry.get<FunctionObject>("functions", opts.name)).spec.environment;
      if (!(await codeAsSourceIfCompiled(ctx, err, envName, opts))) throw err;
      // The file builds into the package named after the function, not the one it runs now.
      delete spec.code;
      delete spec.package;
      const updated = await updateWithOwnPackage(ctx, opts.name, envName, opts, spec);
      confirm(
        ctx,
        updated,
        `function "${opts.name}" updated: package "${opts.name}" built (revision ${updated.metadata.revision})`,
      );
    }
  });

  const del = fn
    .command("delete")
    .alias("rm")
    .description("delete a function (refused while a trigger uses it)")
    .requiredOption("--name <name>", "function name");
  withIgnoreNotFound(del).action(
    deleteAction(
      context,
      "functions",
      "function",
      "Delete the triggers named above, or point them at another function, first.",
    ),
  );

  registerFnTest(fn, context);
  registerFnLogs(fn, context);
}

/** The function (and the package --src/--deploy make first: it needs a build to point at). */
async function createFunction(
  ctx: Context,
  opts: CreateOptions,
  spec: WritableSpec,
): Promise<FunctionObject> {
  const made =
    opts.src !== undefined || opts.deploy !== undefined
      ? await createPackageFor(ctx, opts.name, opts.env, opts)
      : undefined;
  if (made) spec.package = { name: opts.name };
  try {
    return await ctx.registry.create<FunctionObject>("functions", { name: opts.name, spec });
  } catch (err) {
    if (!made) throw err;
    const problem = await made.undo();
    throw withHint(
      err,
      problem
        ? `Package "${opts.name}" was created but could not be removed again: ${problem}`
        : `Package "${opts.name}" was removed again.`,
    );
  }
}

/** `fn update` once the spec is read: the package rebuilt first (--src/--deploy), then the PATCH. */
async function updateFunction(
  ctx: Context,
  cmd: Command,
  opts: NameOptions & SpecOptions & SourceOptions,
  spec: WritableSpec,
): Promise<void> {
  const rebuilt = opts.src !== undefined || opts.deploy !== undefined;
  if (!rebuilt && Object.keys(spec).length === 0) {
    cmd.error(
      "error: nothing to update: give at least one of --code, --src, --deploy, --pkg, --env, " +
        "--entrypoint, --env-var, --secret, --configmap, --concurrency, --min-instances, " +
        "--max-instances, --timeout, --idle-timeout",
      { exitCode: 2 },
    );
  }
  if (rebuilt) Object.assign(spec, await updatePackageOf(ctx, opts.name, opts, opts.env));
  if (Object.keys(spec).length === 0) {
    // Only the package changed; the registry already moved the function to the new build.
    const current = await ctx.registry.get<FunctionObject>("functions", opts.name);
    confirm(
      ctx,
      current,
      `function "${opts.name}" updated: package "${current.spec.package?.name ?? opts.name}" rebuilt (revision ${current.metadata.revision})`,
    );
    return;
  }
  const updated = await ctx.registry.update<FunctionObject>("functions", opts.name, { spec });
  confirm(ctx, updated, `function "${opts.name}" updated (revision ${updated.metadata.revision})`);
}

/** Options shared by create and update; the required ones differ, so they are declared there. */
function withSpecOptions(cmd: Command, update: boolean): Command {
  return withConfigOptions(cmd, update)
    .option(
      "--entrypoint <name>",
      'function to call: "fn", "file.fn" or "dir/file.fn" (default: main.main in Python, the default export in Node)',
    )
    .option(
      "--concurrency <n>",
      "requests one instance serves at once (default: the environment's)",
      parseInteger,
    )
    .option(
      "--min-instances <n>",
      "instances kept running even when idle (default 0)",
      parseInteger,
    )
    .option("--max-instances <n>", "upper bound on instances (default 10)", parseInteger)
    .option("--timeout <seconds>", "request timeout (default 60)", parseSeconds)
    .option(
      "--idle-timeout <seconds>",
      "idle time before an instance is stopped (default 120)",
      parseSeconds,
    );
}

/** Only the given options: on create the registry fills defaults, on update the rest stays. */
async function specFrom(
  opts: SpecOptions,
  codeMaxBytes: number,
  update: boolean,
): Promise<WritableSpec> {
  const spec: WritableSpec = { ...configSpec(opts, update) };
  if (opts.env !== undefined) spec.environment = opts.env;
  if (opts.code !== undefined) spec.code = await readCodeFile(opts.code, codeMaxBytes);
  if (opts.entrypoint !== undefined) spec.entrypoint = opts.entrypoint;
  if (opts.concurrency !== undefined) spec.concurrency = opts.concurrency;
  if (opts.minInstances !== undefined) spec.minInstances = opts.minInstances;
  if (opts.maxInstances !== undefined) spec.maxInstances = opts.maxInstances;
  if (opts.timeout !== undefined) spec.timeoutSeconds = opts.timeout;
  if (opts.idleTimeout !== undefined) spec.idleTimeoutSeconds = opts.idleTimeout;
  return spec;
}

type RouteMatch = { path: string } | { prefix: string };

function routeOf(opts: CreateOptions): RouteMatch | undefined {
  if (opts.route !== undefined) return { path: opts.route };
  if (opts.prefix !== undefined) return { prefix: opts.prefix };
  return undefined;
}

/**
 * The route of `fn create --route` or `--prefix`. The registry has no transactions across objects, so when the
 * trigger is refused (a route conflict, a bad path) the function just created is deleted again:
 * the command either makes both or neither.
 */
async function createRoute(
  ctx: Context,
  name: string,
  match: RouteMatch,
  methods: string[] | undefined,
): Promise<HttpTrigger> {
  try {
    return await ctx.registry.create<HttpTrigger>("httptriggers", {
      name,
      spec: { function: name, ...match, ...(methods ? { methods } : {}) },
    });
  } catch (triggerErr) {
    try {
      await ctx.registry.delete("functions", name);
    } catch (deleteErr) {
      const reason =
        deleteErr instanceof ApiError ? deleteErr.describe() : String((deleteErr as Error).message);
      const ns = ctx.namespace === "default" ? "" : ` -n ${ctx.namespace}`;
      throw withHint(
        triggerErr,
        `The route was not created, and function "${name}" could not be removed again: ${reason}\n` +
          `Remove it with: fizz fn delete --name ${name}${ns}`,
      );
    }
    throw withHint(
      triggerErr,
      `The route was not created, so function "${name}" was removed again.`,
    );
  }
}
