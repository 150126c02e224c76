/**
 * `fizz mqt ...` (also `messagequeue`, `mqtrigger`): message-queue triggers invoke a function for
 * every message on a NATS subject, optionally publishing its answer to a response subject.
 */
import { Option, type Command } from "commander";
import { confirm, reportEmpty, type Context, type ContextFactory } from "../context.js";
import { parseInteger, unsetIfEmpty } from "../options.js";
import { cell, printJson, renderTable } from "../output.js";
import { renderObject, trailingCells } from "../present.js";
import type { MessageQueueTrigger, MessageQueueTriggerSpec } from "../types.js";
import { deleteAction } from "./delete-action.js";
import { fissionFlags, listCommand, withIgnoreNotFound } from "./fission-flags.js";
import { MQT_ALIASES, MQT_UNSUPPORTED, SPEC_FLAGS } from "./fission-names.js";

interface NameOptions {
  name: string;
}

interface SpecOptions {
  function?: string;
  subject?: string;
  queueGroup?: string;
  responseSubject?: string;
  errorSubject?: string;
  maxRetries?: number;
  contentType?: string;
  stream?: string;
}

/** PATCH merges `spec`; null unsets a field. */
type SpecPatch = { [K in keyof MessageQueueTriggerSpec]?: MessageQueueTriggerSpec[K] | null };

const KIND = "mqtriggers";
const WHAT = "message queue trigger";

export function registerMqtCommands(program: Command, context: ContextFactory): void {
  const mqt = program
    .command("mqt")
    .aliases(["messagequeue", "mqtrigger"])
    .description(
      "manage message queue triggers: a function invoked for every message on a NATS subject",
    )
    .addHelpText(
      "after",
      `
Examples:
  fizz mqt create --name orders --function process --subject orders.created
  fizz mqt create --name resize --function resize --subject 'upload.*' --queue-group resizers \\
                  --response-subject images.resized --error-subject images.failed
  fizz mqt create --name billing --function bill --subject billing.due --stream BILLING --max-retries 5
  fizz mqt update --name resize --response-subject ''     (an empty value removes the field)`,
    );

  fissionFlags(
    withSpecOptions(
      mqt
        .command("create")
        .description("create a message queue trigger")
        .requiredOption("--name <name>", "trigger name")
        .requiredOption("--function <function>", "function to invoke (same namespace)")
        // Not commander's requiredOption: Fission's --topic gives it too.
        .option("--subject <subject>", "NATS subject to listen on; '*' and '>' wildcards allowed")
        .addOption(new Option("--mqtype <type>").hideHelp()),
    ),
    {
      aliases: MQT_ALIASES,
      unsupported: { ...MQT_UNSUPPORTED, ...SPEC_FLAGS },
      required: ["--subject"],
    },
  ).action(async (opts: NameOptions & SpecOptions & { mqtype?: string }, cmd: Command) => {
    checkMqType(cmd, opts);
    const ctx = context(cmd);
    const created = await ctx.registry.create<MessageQueueTrigger>(KIND, {
      name: opts.name,
      spec: specFrom(opts, false),
    });
    confirm(ctx, created, `${WHAT} "${opts.name}" created: ${describeMqt(created.spec)}`);
  });

  mqt
    .command("get")
    .description("show one message queue trigger")
    .requiredOption("--name <name>", "trigger name")
    .action(async (opts: NameOptions, cmd: Command) => {
      const ctx = context(cmd);
      const found = await ctx.registry.get<MessageQueueTrigger>(KIND, opts.name);
      if (ctx.output === "json") printJson(ctx.stdout, found);
      else ctx.stdout.write(renderMqt(ctx, found));
    });

  listCommand(mqt, "message queue triggers").action(async (_opts: unknown, cmd: Command) => {
    const ctx = context(cmd);
    const list = await ctx.registry.list<MessageQueueTrigger>(KIND);
    printList(ctx, list.items, list);
  });

  fissionFlags(
    withSpecOptions(
      mqt
        .command("update")
        .description("change a message queue trigger; only the given fields change")
        .requiredOption("--name <name>", "trigger name")
        .option("--function <function>", "function to invoke")
        .option("--subject <subject>", "NATS subject to listen on"),
    ),
    {
      aliases: MQT_ALIASES,
      unsupported: MQT_UNSUPPORTED,
    },
  ).action(async (opts: NameOptions & SpecOptions, cmd: Command) => {
    const spec = specFrom(opts, true);
    if (Object.keys(spec).length === 0) {
      cmd.error(
        "error: nothing to update: give at least one of --function, --subject, --queue-group, " +
          "--response-subject, --error-subject, --max-retries, --content-type, --stream",
        { exitCode: 2 },
      );
    }
    const ctx = context(cmd);
    const updated = await ctx.registry.update<MessageQueueTrigger>(KIND, opts.name, { spec });
    confirm(ctx, updated, `${WHAT} "${opts.name}" updated (revision ${updated.metadata.revision})`);
  });

  withIgnoreNotFound(
    mqt
      .command("delete")
      .alias("rm")
      .description("delete a message queue trigger")
      .requiredOption("--name <name>", "trigger name"),
  ).action(deleteAction(context, KIND, `${WHAT}`));
}

function withSpecOptions(cmd: Command): Command {
  return cmd
    .option(
      "--queue-group <group>",
      "NATS queue group; triggers in one group split the messages (default: one per trigger)",
    )
    .option("--response-subject <subject>", "publish the function's response here")
    .option("--error-subject <subject>", "publish failures here once retries are spent")
    .option(
      "--max-retries <n>",
      "attempts after the first failure, 0-100 (default 3)",
      parseInteger,
    )
    .option("--content-type <type>", "Content-Type the function sees (default application/json)")
    .option(
      "--stream <stream>",
      "consume from this JetStream stream: at least once (default: core NATS, at most once)",
    );
}

/**
 * Fission's --mqtype names the broker. fizz reads NATS only: core NATS, or JetStream (KEDA's
 * nats-jetstream) with --stream; anything else would silently read another broker's topic here.
 */
function checkMqType(cmd: Command, opts: SpecOptions & { mqtype?: string }): void {
  const type = opts.mqtype;
  if (type === undefined) return;
  const fail = (why: string) =>
    cmd.error(`error: --mqtype ${type} (a Fission flag): ${why}`, {
      exitCode: 2,
      code: "fizz.unsupportedFissionFlag",
    });
  if (type === "nats") {
    if (opts.stream !== undefined)
      fail("core NATS does not read a stream; use --mqtype nats-jetstream with --stream");
  } else if (type === "nats-jetstream") {
    if (opts.stream === undefined) fail("give the JetStream stream to consume with --stream");
  } else {
    fail("is not supported: fizz reads NATS only (--mqtype nats, or nats-jetstream with --stream)");
  }
}

/** Only the given options. On update an empty value unsets the field. */
function specFrom(opts: SpecOptions, update: boolean): SpecPatch {
  const optional = (v: string) => (update ? unsetIfEmpty(v) : v);
  const spec: SpecPatch = {};
  if (opts.function !== undefined) spec.function = opts.function;
  if (opts.subject !== undefined) spec.subject = opts.subject;
  if (opts.queueGroup !== undefined) spec.queueGroup = optional(opts.queueGroup);
  if (opts.responseSubject !== undefined) spec.responseSubject = optional(opts.responseSubject);
  if (opts.errorSubject !== undefined) spec.errorSubject = optional(opts.errorSubject);
  if (opts.maxRetries !== undefined) spec.maxRetries = opts.maxRetries;
  if (opts.contentType !== undefined) spec.contentType = optional(opts.contentType);
  if (opts.stream !== undefined) spec.stream = optional(opts.stream);
  return spec;
}

/** `orders.* -> process -> orders.done`: where messages come from and where answers go. */
export function describeMqt(spec: MessageQueueTriggerSpec): string {
  const answer = spec.responseSubject ? ` -> ${spec.responseSubject}` : "";
  const via = spec.stream ? ` (stream ${spec.stream})` : "";
  return `${spec.subject}${via} -> ${spec.function}${answer}`;
}

function printList(ctx: Context, items: MessageQueueTrigger[], raw: unknown): void {
  if (ctx.output === "json") return printJson(ctx.stdout, raw);
  if (items.length === 0) return reportEmpty(ctx, "message queue triggers");
  const now = ctx.now();
  ctx.stdout.write(
    renderTable(
      [
        "NAME",
        "FUNCTION",
        "SUBJECT",
        "QUEUE GROUP",
        "RESPONSE SUBJECT",
        "STREAM",
        "REVISION",
        "AGE",
      ],
      items.map((t) => [
        t.metadata.name,
        cell(t.spec.function),
        cell(t.spec.subject),
        cell(t.spec.queueGroup),
        cell(t.spec.responseSubject),
        cell(t.spec.stream),
        ...trailingCells(t, now),
      ]),
    ),
  );
}

function renderMqt(ctx: Context, t: MessageQueueTrigger): string {
  const { spec, metadata } = t;
  return renderObject(
    t,
    [
      ["Function", cell(spec.function)],
      ["Subject", cell(spec.subject)],
      [
        "Queue group",
        spec.queueGroup ?? `fizz-mqt-${metadata.namespace}-${metadata.name} (its own)`,
      ],
      ["Response subject", cell(spec.responseSubject)],
      ["Error subject", cell(spec.errorSubject)],
      ["Max retries", cell(spec.maxRetries)],
      ["Content type", cell(spec.contentType)],
      [
        "Delivery",
        spec.stream
          ? `JetStream stream ${spec.stream} (at least once)`
          : "core NATS (at most once)",
      ],
    ],
    ctx.now(),
  );
}
