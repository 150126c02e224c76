/** `fizz env ...`: environments are the language runtimes (and warm pools) functions run in. */
import type { Command } from "commander";
import { confirm, reportEmpty, type Context, type ContextFactory } from "../context.js";
import { parseInteger, splitCommand } from "../options.js";
import { cell, NONE, printJson, renderTable } from "../output.js";
import { renderObject, trailingCells } from "../present.js";
import type { Environment, EnvironmentSpec } from "../types.js";
import { deleteAction } from "./delete-action.js";
import { fissionFlags, listCommand, withIgnoreNotFound } from "./fission-flags.js";
import { ENV_UNSUPPORTED, SPEC_FLAGS } from "./fission-names.js";

interface SpecOptions {
  image?: string;
  builder?: string;
  command?: string[];
  poolsize?: number;
  concurrency?: number;
}

interface NameOptions {
  name: string;
}

export function registerEnvCommands(program: Command, context: ContextFactory): void {
  const env = program
    .command("env")
    .alias("environment")
    .description("manage environments: the language runtimes functions run in")
    .addHelpText(
      "after",
      `
Examples:
  fizz env create --name python --image fizz/env-python
  fizz env create --name node --image fizz/env-node --poolsize 5 --concurrency 100
  fizz env create --name go --image fizz/env-go        # also fizz/env-php, env-ruby, env-dotnet
  fizz env create --name mine --image acme/runtime --command "python3 -u server.py"
  fizz env list`,
    );

  fissionFlags(
    withSpecOptions(
      env
        .command("create")
        .description("create an environment")
        .requiredOption("--name <name>", "environment name")
        .requiredOption(
          "--image <image>",
          "runtime image: fizz/env-node, env-python, env-go, env-php, env-ruby, env-dotnet, or your own (with --command on the process backend)",
        ),
    ),
    { unsupported: { ...ENV_UNSUPPORTED, ...SPEC_FLAGS } },
  ).action(async (opts: NameOptions & SpecOptions, cmd: Command) => {
    const ctx = context(cmd);
    const created = await ctx.registry.create<Environment>("environments", {
      name: opts.name,
      spec: specFrom(opts),
    });
    confirm(ctx, created, `environment "${opts.name}" created`);
  });

  env
    .command("get")
    .description("show one environment")
    .requiredOption("--name <name>", "environment name")
    .action(async (opts: NameOptions, cmd: Command) => {
      const ctx = context(cmd);
      const found = await ctx.registry.get<Environment>("environments", opts.name);
      if (ctx.output === "json") printJson(ctx.stdout, found);
      else ctx.stdout.write(renderEnvironment(found, ctx.now()));
    });

  listCommand(env, "environments").action(async (_opts: unknown, cmd: Command) => {
    const ctx = context(cmd);
    const list = await ctx.registry.list<Environment>("environments");
    printList(ctx, list.items, list);
  });

  fissionFlags(
    withSpecOptions(
      env
        .command("update")
        .description("change an environment; only the given fields change")
        .requiredOption("--name <name>", "environment name")
        .option("--image <image>", "runtime image"),
    ),
    { unsupported: ENV_UNSUPPORTED },
  ).action(async (opts: NameOptions & SpecOptions, cmd: Command) => {
    const ctx = context(cmd);
    const spec = specFrom(opts);
    if (Object.keys(spec).length === 0) {
      cmd.error(
        "error: nothing to update: give at least one of --image, --command, --builder, --poolsize, --concurrency",
        { exitCode: 2, code: "fizz.nothingToUpdate" },
      );
    }
    if (spec.builder) {
      // The registry replaces spec.builder whole: keep its other settings (env, limits).
      const current = await ctx.registry.get<Environment>("environments", opts.name);
      spec.builder = { ...current.spec.builder, ...spec.builder };
    }
    const updated = await ctx.registry.update<Environment>("environments", opts.name, { spec });
    confirm(
      ctx,
      updated,
      `environment "${opts.name}" updated (revision ${updated.metadata.revision})`,
    );
  });

  fissionFlags(
    withIgnoreNotFound(
      env
        .command("delete")
        .alias("rm")
        .description("delete an environment (refused while a function uses it)")
        .requiredOption("--name <name>", "environment name"),
    ),
    { unsupported: { "-f, --force": "fizz never deletes an environment its functions use" } },
  ).action(
    deleteAction(
      context,
      "environments",
      "environment",
      `Delete its functions or move them to another environment first.`,
    ),
  );
}

/** Options shared by create and update; `--image` differs (required vs optional) so it is not here. */
function withSpecOptions(cmd: Command): Command {
  return cmd
    .option(
      "--command <command>",
      'command that starts the loader, e.g. "python3 -u server.py" (needed for images without a local runtime)',
      splitCommand,
    )
    .option(
      "--builder <image>",
      "builder image of package builds on Kubernetes (default: the runtime image's builder-<lang> sibling, e.g. fizz/builder-go); the process backend builds locally",
    )
    .option("--poolsize <n>", "warm instances kept ready, 0-100 (default 3)", parseInteger)
    .option(
      "--concurrency <n>",
      "default per-instance concurrency of its functions (default node and go 50, others 10)",
      parseInteger,
    );
}

/** Only the given options: on create the registry fills defaults, on update the rest stays. */
function specFrom(opts: SpecOptions): Partial<EnvironmentSpec> {
  const spec: Partial<EnvironmentSpec> = {};
  if (opts.image !== undefined) spec.image = opts.image;
  if (opts.command !== undefined) spec.command = opts.command;
  if (opts.poolsize !== undefined) spec.poolSize = opts.poolsize;
  if (opts.concurrency !== undefined) spec.concurrency = opts.concurrency;
  if (opts.builder !== undefined) spec.builder = { image: opts.builder };
  return spec;
}

function printList(ctx: Context, items: Environment[], raw: unknown): void {
  if (ctx.output === "json") return printJson(ctx.stdout, raw);
  if (items.length === 0) return reportEmpty(ctx, "environments");
  const now = ctx.now();
  ctx.stdout.write(
    renderTable(
      ["NAME", "IMAGE", "POOLSIZE", "CONCURRENCY", "REVISION", "AGE"],
      items.map((e) => [
        e.metadata.name,
        cell(e.spec.image),
        cell(e.spec.poolSize),
        cell(e.spec.concurrency),
        ...trailingCells(e, now),
      ]),
    ),
  );
}

function renderEnvironment(e: Environment, now: number): string {
  return renderObject(
    e,
    [
      ["Image", cell(e.spec.image)],
      ["Command", e.spec.command ? formatCommand(e.spec.command) : NONE],
      ["Builder", e.spec.builder?.image ?? NONE],
      ["Pool size", cell(e.spec.poolSize)],
      ["Concurrency", cell(e.spec.concurrency)],
    ],
    now,
  );
}

/** Quotes the arguments that need it, so the line can be pasted back into `--command`. */
function formatCommand(argv: string[]): string {
  return argv.map((arg) => (/^[\w@%+=:,./-]+$/.test(arg) ? arg : JSON.stringify(arg))).join(" ");
}
