/**
 * `fizz watch ...` (also `watchtrigger`, `w`): watch triggers invoke a function for Kubernetes
 * events (ADDED, MODIFIED, DELETED) on a resource in a namespace.
 */
import type { Command } from "commander";
import { confirm, reportEmpty, type Context, type ContextFactory } from "../context.js";
import { collectEvents, unsetIfEmpty, WATCH_EVENTS } from "../options.js";
import { cell, printJson, renderTable } from "../output.js";
import { renderObject, trailingCells } from "../present.js";
import type { WatchTrigger, WatchTriggerSpec } from "../types.js";
import { deleteAction } from "./delete-action.js";
import { fissionFlags, listCommand, withIgnoreNotFound } from "./fission-flags.js";
import { SPEC_FLAGS } from "./fission-names.js";

interface NameOptions {
  name: string;
}

interface SpecOptions {
  function?: string;
  type?: string;
  watchNamespace?: string;
  labels?: string;
  fields?: string;
  events?: string[];
}

type SpecPatch = { [K in keyof WatchTriggerSpec]?: WatchTriggerSpec[K] | null };

const KIND = "watchtriggers";

export function registerWatchCommands(program: Command, context: ContextFactory): void {
  const watch = program
    .command("watch")
    .aliases(["watchtrigger", "w"])
    .description("manage watch triggers: a function invoked for Kubernetes events on a resource")
    .addHelpText(
      "after",
      `
The trigger lives in the namespace of -n/--namespace and, by default, watches that same
namespace: "fizz watch create -n team-a ..." watches team-a. --watch-namespace watches another
one, which the registry refuses unless it runs with FIZZ_WATCH_CLUSTER_SCOPE=true.

Examples:
  fizz watch create --name new-pods --function audit --type pods --events ADDED
  fizz watch create --name web --function sync --type deployments.apps --labels app=web,tier=front
  fizz -n team-a watch create --name svc --function dns --type services`,
    );

  const create = withSpecOptions(
    watch
      .command("create")
      .description("create a watch trigger")
      .requiredOption("--name <name>", "trigger name")
      .requiredOption("--function <function>", "function to invoke (same namespace)")
      .requiredOption(
        "--type <resource>",
        "resource to watch: pods, services, deployments.apps, ...",
      ),
    "namespace to watch (default: the trigger's own, -n)",
  );
  fissionFlags(create, {
    aliases: { "--ns <namespace>": "--watch-namespace" },
    unsupported: SPEC_FLAGS,
  }).action(async (opts: NameOptions & SpecOptions, cmd: Command) => {
    const ctx = context(cmd);
    const spec = specFrom(opts, false);
    spec.namespace = opts.watchNamespace ?? ctx.namespace;
    const created = await ctx.registry.create<WatchTrigger>(KIND, { name: opts.name, spec });
    confirm(ctx, created, `watch "${opts.name}" created: ${describeWatch(created.spec)}`);
  });

  watch
    .command("get")
    .description("show one watch trigger")
    .requiredOption("--name <name>", "trigger name")
    .action(async (opts: NameOptions, cmd: Command) => {
      const ctx = context(cmd);
      const found = await ctx.registry.get<WatchTrigger>(KIND, opts.name);
      if (ctx.output === "json") printJson(ctx.stdout, found);
      else ctx.stdout.write(renderWatch(found, ctx.now()));
    });

  listCommand(watch, "watch triggers").action(async (_opts: unknown, cmd: Command) => {
    const ctx = context(cmd);
    const list = await ctx.registry.list<WatchTrigger>(KIND);
    printList(ctx, list.items, list);
  });

  const update = withSpecOptions(
    watch
      .command("update")
      .description("change a watch trigger; only the given fields change")
      .requiredOption("--name <name>", "trigger name")
      .option("--function <function>", "function to invoke")
      .option("--type <resource>", "resource to watch"),
    "namespace to watch",
  );
  fissionFlags(update, { aliases: { "--ns <namespace>": "--watch-namespace" } }).action(
    async (opts: NameOptions & SpecOptions, cmd: Command) => {
      const spec = specFrom(opts, true);
      if (opts.watchNamespace !== undefined) spec.namespace = opts.watchNamespace;
      if (Object.keys(spec).length === 0) {
        cmd.error(
          "error: nothing to update: give at least one of --function, --type, --watch-namespace, " +
            "--labels, --fields, --events",
          { exitCode: 2 },
        );
      }
      const ctx = context(cmd);
      const updated = await ctx.registry.update<WatchTrigger>(KIND, opts.name, { spec });
      confirm(ctx, updated, `watch "${opts.name}" updated (revision ${updated.metadata.revision})`);
    },
  );

  withIgnoreNotFound(
    watch
      .command("delete")
      .alias("rm")
      .description("delete a watch trigger")
      .requiredOption("--name <name>", "trigger name"),
  ).action(deleteAction(context, KIND, "watch"));
}

function withSpecOptions(cmd: Command, watchNamespaceHelp: string): Command {
  return cmd
    .option("--watch-namespace <namespace>", watchNamespaceHelp)
    .option("--labels <selector>", "label selector, e.g. app=web,tier!=db")
    .option("--fields <selector>", "field selector, e.g. status.phase=Running")
    .option(
      "--events <events>",
      `events to react to, comma-separated or repeated: ${WATCH_EVENTS.join(", ")} (default: all)`,
      collectEvents,
    );
}

/** Only the given options. On update an empty --labels or --fields removes the selector. */
function specFrom(opts: SpecOptions, update: boolean): SpecPatch {
  const optional = (v: string) => (update ? unsetIfEmpty(v) : v);
  const spec: SpecPatch = {};
  if (opts.function !== undefined) spec.function = opts.function;
  if (opts.type !== undefined) spec.resource = opts.type;
  if (opts.labels !== undefined) spec.labels = optional(opts.labels);
  if (opts.fields !== undefined) spec.fields = optional(opts.fields);
  if (opts.events !== undefined) spec.events = opts.events;
  return spec;
}

/** `pods in namespace "default" with labels app=web -> audit`. */
function describeWatch(spec: WatchTriggerSpec): string {
  const labels = spec.labels ? ` with labels ${spec.labels}` : "";
  return `${spec.resource} in namespace "${spec.namespace}"${labels} -> ${spec.function}`;
}

/** `*` when every event is watched, like `*` for every method in the routes table. */
function eventsOf(spec: WatchTriggerSpec): string {
  const events = spec.events ?? [];
  return events.length === 0 || WATCH_EVENTS.every((e) => events.includes(e))
    ? "*"
    : events.join(",");
}

function printList(ctx: Context, items: WatchTrigger[], raw: unknown): void {
  if (ctx.output === "json") return printJson(ctx.stdout, raw);
  if (items.length === 0) return reportEmpty(ctx, "watch triggers");
  const now = ctx.now();
  ctx.stdout.write(
    renderTable(
      ["NAME", "FUNCTION", "RESOURCE", "WATCHED NAMESPACE", "LABELS", "EVENTS", "REVISION", "AGE"],
      items.map((t) => [
        t.metadata.name,
        cell(t.spec.function),
        cell(t.spec.resource),
        cell(t.spec.namespace),
        cell(t.spec.labels),
        eventsOf(t.spec),
        ...trailingCells(t, now),
      ]),
    ),
  );
}

function renderWatch(t: WatchTrigger, now: number): string {
  const events = eventsOf(t.spec);
  return renderObject(
    t,
    [
      ["Function", cell(t.spec.function)],
      ["Resource", cell(t.spec.resource)],
      ["Watched namespace", cell(t.spec.namespace)],
      ["Label selector", cell(t.spec.labels)],
      ["Field selector", cell(t.spec.fields)],
      ["Events", events === "*" ? `${WATCH_EVENTS.join(", ")} (all)` : events],
    ],
    now,
  );
}
