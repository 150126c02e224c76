/** `fizz timer ...` (also `timetrigger`, `tt`): time triggers invoke a function on a schedule. */
import { InvalidArgumentError, type Command } from "commander";
import { readBody } from "../code.js";
import { confirm, reportEmpty, type Context, type ContextFactory } from "../context.js";
import { unsetIfEmpty } from "../options.js";
import { cell, NONE, printJson, renderTable } from "../output.js";
import { renderObject, trailingCells } from "../present.js";
import type { TimeTrigger, TimeTriggerSpec } from "../types.js";
import { deleteAction } from "./delete-action.js";
import { fissionFlags, listCommand, withIgnoreNotFound } from "./fission-flags.js";
import { SPEC_FLAGS } from "./fission-names.js";
import { describeUpcoming, formatRun, registerShowSchedule, upcoming } from "./timer-schedule.js";

interface NameOptions {
  name: string;
}

interface SpecOptions {
  function?: string;
  cron?: string;
  method?: string;
  body?: string;
  contentType?: string;
}

type SpecPatch = { [K in keyof TimeTriggerSpec]?: TimeTriggerSpec[K] | null };

const KIND = "timetriggers";
const METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"];
/** Bodies longer than this are summarised in `get`; `-o json` has them whole. */
const BODY_PREVIEW = 60;

export function registerTimerCommands(program: Command, context: ContextFactory): void {
  const timer = program
    .command("timer")
    .aliases(["timetrigger", "tt"])
    .description("manage timers (time triggers): a function invoked on a cron schedule")
    .addHelpText(
      "after",
      `
Schedules: cron with 5 fields (minute hour day month weekday) or 6 (seconds first), the
nicknames @yearly @monthly @weekly @daily @hourly, or @every <duration> (30s, 5m, 1h30m).

Examples:
  fizz timer create --name nightly --function report --cron '0 3 * * *'
  fizz timer create --name poll --function poll --cron '@every 30s' --method GET
  fizz timer showschedule --cron '*/15 9-17 * * 1-5'`,
    );

  fissionFlags(
    withSpecOptions(
      timer
        .command("create")
        .description("create a timer")
        .requiredOption("--name <name>", "timer name")
        .requiredOption("--function <function>", "function to invoke (same namespace)")
        .requiredOption("--cron <expression>", "when to fire, e.g. '0 3 * * *' or '@every 5m'"),
    ),
    { unsupported: { "--subpath <path>": SUBPATH, ...SPEC_FLAGS } },
  ).action(async (opts: NameOptions & SpecOptions, cmd: Command) => {
    const ctx = context(cmd);
    const spec = await specFrom(opts, false, ctx.bodyMaxBytes);
    const created = await ctx.registry.create<TimeTrigger>(KIND, { name: opts.name, spec });
    const next = await upcoming(created.spec.cron, ctx.now(), 1);
    const when =
      "nextRuns" in next && next.nextRuns[0] ? `, next run ${formatRun(next.nextRuns[0])}` : "";
    confirm(ctx, created, `timer "${opts.name}" created: ${describeTimer(created.spec)}${when}`);
  });

  timer
    .command("get")
    .description("show one timer with its next firing times")
    .requiredOption("--name <name>", "timer name")
    .action(async (opts: NameOptions, cmd: Command) => {
      const ctx = context(cmd);
      const found = await ctx.registry.get<TimeTrigger>(KIND, opts.name);
      if (ctx.output === "json") printJson(ctx.stdout, found);
      else ctx.stdout.write(await renderTimer(ctx, found));
    });

  listCommand(timer, "timers").action(async (_opts: unknown, cmd: Command) => {
    const ctx = context(cmd);
    const list = await ctx.registry.list<TimeTrigger>(KIND);
    await printList(ctx, list.items, list);
  });

  fissionFlags(
    withSpecOptions(
      timer
        .command("update")
        .description("change a timer; only the given fields change")
        .requiredOption("--name <name>", "timer name")
        .option("--function <function>", "function to invoke")
        .option("--cron <expression>", "new schedule"),
    ),
    { unsupported: { "--subpath <path>": SUBPATH } },
  ).action(async (opts: NameOptions & SpecOptions, cmd: Command) => {
    const spec = await specFrom(opts, true, context(cmd).bodyMaxBytes);
    if (Object.keys(spec).length === 0) {
      cmd.error(
        "error: nothing to update: give at least one of --function, --cron, --method, --body, --content-type",
        { exitCode: 2 },
      );
    }
    const ctx = context(cmd);
    const updated = await ctx.registry.update<TimeTrigger>(KIND, opts.name, { spec });
    confirm(ctx, updated, `timer "${opts.name}" updated (revision ${updated.metadata.revision})`);
  });

  withIgnoreNotFound(
    timer
      .command("delete")
      .alias("rm")
      .description("delete a timer")
      .requiredOption("--name <name>", "timer name"),
  ).action(deleteAction(context, KIND, "timer"));

  registerShowSchedule(timer, context);
}

const SUBPATH = "a timer calls its function's root path; a sub-path is not part of a timer";

function withSpecOptions(cmd: Command): Command {
  return cmd
    .option(
      "--method <method>",
      `HTTP method the function sees: ${METHODS.join(", ")} (default POST)`,
      parseMethod,
    )
    .option("--body <body>", "request body of every call; @file reads it from a file")
    .option("--content-type <type>", "Content-Type of the body (default application/json)");
}

function parseMethod(value: string): string {
  const method = value.trim().toUpperCase();
  if (!METHODS.includes(method)) {
    throw new InvalidArgumentError(`must be one of ${METHODS.join(", ")}.`);
  }
  return method;
}

/** Only the given options. On update an empty --body or --content-type unsets the field. */
async function specFrom(
  opts: SpecOptions,
  update: boolean,
  bodyMaxBytes: number,
): Promise<SpecPatch> {
  const spec: SpecPatch = {};
  if (opts.function !== undefined) spec.function = opts.function;
  if (opts.cron !== undefined) spec.cron = opts.cron;
  if (opts.method !== undefined) spec.method = opts.method;
  if (opts.body !== undefined) {
    spec.body =
      update && opts.body === ""
        ? null
        : (await readBody(opts.body, bodyMaxBytes)).bytes.toString("utf8");
  }
  if (opts.contentType !== undefined)
    spec.contentType = update ? unsetIfEmpty(opts.contentType) : opts.contentType;
  return spec;
}

/** `0 3 * * * -> report`. */
function describeTimer(spec: TimeTriggerSpec): string {
  return `${spec.cron} -> ${spec.function}`;
}

async function printList(ctx: Context, items: TimeTrigger[], raw: unknown): Promise<void> {
  if (ctx.output === "json") return printJson(ctx.stdout, raw);
  if (items.length === 0) return reportEmpty(ctx, "timers");
  const now = ctx.now();
  const rows = await Promise.all(
    items.map(async (t) => [
      t.metadata.name,
      cell(t.spec.function),
      cell(t.spec.cron),
      cell(t.spec.method),
      describeUpcoming(await upcoming(t.spec.cron, now, 1)),
      ...trailingCells(t, now),
    ]),
  );
  ctx.stdout.write(
    renderTable(["NAME", "FUNCTION", "CRON", "METHOD", "NEXT RUN", "REVISION", "AGE"], rows),
  );
}

async function renderTimer(ctx: Context, t: TimeTrigger): Promise<string> {
  const { spec } = t;
  const body = spec.body;
  const preview =
    body === undefined || body === ""
      ? NONE
      : body.length <= BODY_PREVIEW && !body.includes("\n")
        ? body
        : `${Buffer.byteLength(body)} bytes (see -o json)`;
  return renderObject(
    t,
    [
      ["Function", cell(spec.function)],
      ["Cron", cell(spec.cron)],
      ["Method", cell(spec.method)],
      ["Content type", cell(spec.contentType)],
      ["Body", preview],
      ["Next runs", describeUpcoming(await upcoming(spec.cron, ctx.now(), 3))],
    ],
    ctx.now(),
  );
}
