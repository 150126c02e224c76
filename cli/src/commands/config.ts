/**
 * `fizz secret ...` and `fizz configmap ...`: named sets of key/value pairs a function mounts as
 * files. Secret values are sent base64 and never come back: the registry returns key names only,
 * and this file never prints a value it was given. ConfigMap values are plain text and shown.
 */
import type { Command } from "commander";
import { readValueFile } from "../code.js";
import { confirm, reportEmpty, type Context, type ContextFactory } from "../context.js";
import { ApiError, CliError, withHint } from "../errors.js";
import { collectFiles, collectLiterals } from "../options.js";
import { cell, printJson, renderTable } from "../output.js";
import { renderObject, trailingCells } from "../present.js";
import type { ApiObject, ConfigMapObject, List, SecretObject } from "../types.js";

/** The registry's limit on one secret's or configmap's values (CONFIG_MAX_BYTES). */
const CONFIG_MAX_BYTES = 1024 * 1024;

interface NameOptions {
  name: string;
}

interface DataOptions extends NameOptions {
  fromLiteral?: Array<[string, string]>;
  fromFile?: Array<[string, string]>;
}

type ConfigKind = "secrets" | "configmaps";

interface KindText {
  kind: ConfigKind;
  command: string;
  alias: string;
  noun: string;
  plural: string;
}

const SECRET: KindText = {
  kind: "secrets",
  command: "secret",
  alias: "secrets",
  noun: "secret",
  plural: "secrets",
};
const CONFIGMAP: KindText = {
  kind: "configmaps",
  command: "configmap",
  alias: "cm",
  noun: "configmap",
  plural: "configmaps",
};

export function registerConfigCommands(program: Command, context: ContextFactory): void {
  registerKind(program, context, SECRET);
  registerKind(program, context, CONFIGMAP);
}

function registerKind(program: Command, context: ContextFactory, text: KindText): void {
  const { noun } = text;
  const secret = text.kind === "secrets";
  const group = program
    .command(text.command)
    .alias(text.alias)
    .description(
      secret
        ? "manage secrets: values a function reads as files; never shown again once stored"
        : "manage configmaps: plain-text settings a function reads as files",
    )
    .addHelpText(
      "after",
      secret
        ? `
Examples:
  fizz secret create --name db --from-literal user=shop --from-file password=./db-password.txt
  fizz fn update --name orders --secret db      # files under $FIZZ_SECRETS_DIR/<ns>/db/
  fizz secret get --name db                     # key names only

Values given with --from-literal end up in your shell history and the process list;
--from-file keeps them out of both.`
        : `
Examples:
  fizz configmap create --name settings --from-literal mode=fast --from-file rules.json
  fizz fn update --name orders --configmap settings   # files under $FIZZ_CONFIGS_DIR/<ns>/settings/`,
    );

  withDataOptions(
    group
      .command("create")
      .description(`create a ${noun}`)
      .requiredOption("--name <name>", `${noun} name`),
    noun,
  ).action(async (opts: DataOptions, cmd: Command) => {
    const ctx = context(cmd);
    const data = await dataFrom(cmd, opts, secret);
    const created = await ctx.registry.create<ApiObject<unknown>>(text.kind, {
      name: opts.name,
      spec: { data },
    });
    confirm(ctx, redacted(created, secret), `${noun} "${opts.name}" created (${keyCount(data)})`);
  });

  group
    .command("get")
    .description(secret ? "show a secret's key names (never its values)" : "show a configmap")
    .requiredOption("--name <name>", `${noun} name`)
    .action(async (opts: NameOptions, cmd: Command) => {
      const ctx = context(cmd);
      const found = await ctx.registry.get<ApiObject<unknown>>(text.kind, opts.name);
      if (ctx.output === "json") printJson(ctx.stdout, redacted(found, secret));
      else ctx.stdout.write(render(found, secret, ctx.now()));
    });

  group
    .command("list")
    .alias("ls")
    .description(`list the ${text.plural} of the namespace`)
    .action(async (_opts: unknown, cmd: Command) => {
      const ctx = context(cmd);
      const list = await ctx.registry.list<ApiObject<unknown>>(text.kind);
      printList(ctx, list, secret, text.plural);
    });

  withDataOptions(
    group
      .command("update")
      .description(`replace a ${noun}'s data: keys not given are removed`)
      .requiredOption("--name <name>", `${noun} name`),
    noun,
  ).action(async (opts: DataOptions, cmd: Command) => {
    const ctx = context(cmd);
    const data = await dataFrom(cmd, opts, secret);
    const updated = await ctx.registry.update<ApiObject<unknown>>(text.kind, opts.name, {
      spec: { data },
    });
    confirm(
      ctx,
      redacted(updated, secret),
      `${noun} "${opts.name}" updated (${keyCount(data)}, revision ${updated.metadata.revision})`,
    );
  });

  group
    .command("delete")
    .alias("rm")
    .description(`delete a ${noun}`)
    .requiredOption("--name <name>", `${noun} name`)
    .action(async (opts: NameOptions, cmd: Command) => {
      const ctx = context(cmd);
      try {
        const deleted = await ctx.registry.delete<ApiObject<unknown>>(text.kind, opts.name);
        confirm(ctx, redacted(deleted, secret), `${noun} "${opts.name}" deleted`);
      } catch (err) {
        if (err instanceof ApiError && err.code === "IN_USE") {
          throw withHint(
            err,
            `Remove it from the functions named above first (fizz fn update --${text.command} ...).`,
          );
        }
        throw err;
      }
    });
}

function withDataOptions(cmd: Command, noun: string): Command {
  return cmd
    .option("--from-literal <key=value>", `a key and its value; repeatable`, collectLiterals)
    .option(
      "--from-file <[key=]path>",
      `a key and the file holding its value (key default: the file name); repeatable`,
      collectFiles,
    )
    .addHelpText(
      "after",
      `\nAt least one --from-literal or --from-file; a ${noun} holds at most 1 MiB.`,
    );
}

/**
 * The `data` sent: base64 for secrets (binary-safe, as Kubernetes' `data`), text for configmaps.
 * Files are read (bounded) before any request, so a bad path changes nothing.
 */
async function dataFrom(
  cmd: Command,
  opts: DataOptions,
  secret: boolean,
): Promise<Record<string, string>> {
  const literals = opts.fromLiteral ?? [];
  const files = opts.fromFile ?? [];
  if (literals.length + files.length === 0) {
    cmd.error("error: give at least one --from-literal <key=value> or --from-file <[key=]path>", {
      exitCode: 2,
    });
  }
  const values = new Map<string, Buffer>();
  for (const [key, value] of literals) values.set(key, Buffer.from(value, "utf8"));
  for (const [key, path] of files) {
    if (values.has(key)) {
      cmd.error(`error: key '${key}' is given by both --from-literal and --from-file`, {
        exitCode: 2,
      });
    }
    values.set(key, await readValueFile(path, "--from-file", CONFIG_MAX_BYTES));
  }
  let total = 0;
  for (const v of values.values()) total += v.length;
  if (total > CONFIG_MAX_BYTES) {
    throw new CliError(
      `the values add up to ${total} bytes, over the limit of ${CONFIG_MAX_BYTES} bytes`,
    );
  }
  const data: Record<string, string> = {};
  for (const [key, bytes] of values) {
    data[key] = secret ? bytes.toString("base64") : utf8(bytes, key);
  }
  return data;
}

function utf8(bytes: Buffer, key: string): string {
  try {
    return new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    throw new CliError(`the value of '${key}' is not UTF-8 text; use a secret for binary values`);
  }
}

function keyCount(data: Record<string, string>): string {
  const n = Object.keys(data).length;
  return n === 1 ? "1 key" : `${n} keys`;
}

/** Key names of either kind: a secret's `keys`, a configmap's `data` keys. */
function keysOf(obj: ApiObject<unknown>): string[] {
  const spec = (obj.spec ?? {}) as { keys?: unknown; data?: unknown };
  if (Array.isArray(spec.keys)) return spec.keys.filter((k): k is string => typeof k === "string");
  if (typeof spec.data === "object" && spec.data !== null) return Object.keys(spec.data);
  return [];
}

/**
 * A secret as the CLI shows it: key names only. The registry never returns values; this makes
 * sure a registry that did (a bug, an old version) still cannot get them printed.
 */
function redacted(obj: ApiObject<unknown>, secret: boolean): unknown {
  if (!secret) return obj;
  return { ...obj, spec: { keys: keysOf(obj) } } satisfies SecretObject;
}

function render(obj: ApiObject<unknown>, secret: boolean, now: number): string {
  const keys = keysOf(obj);
  if (secret) return renderObject(obj, [["Keys", keys.length ? keys.join(", ") : "(none)"]], now);
  const data = (obj as ConfigMapObject).spec.data ?? {};
  const details = renderObject(obj, [["Keys", keys.length ? keys.join(", ") : "(none)"]], now);
  const values = keys.map((k) => `--- ${k} ---\n${(data[k] ?? "").replace(/\n$/, "")}\n`).join("");
  return values ? `${details}\nData:\n${values}` : details;
}

function printList(
  ctx: Context,
  list: List<ApiObject<unknown>>,
  secret: boolean,
  plural: string,
): void {
  const { items } = list;
  if (ctx.output === "json") {
    return printJson(ctx.stdout, { ...list, items: items.map((i) => redacted(i, secret)) });
  }
  if (items.length === 0) return reportEmpty(ctx, plural);
  const now = ctx.now();
  ctx.stdout.write(
    renderTable(
      ["NAME", "KEYS", "REVISION", "AGE"],
      items.map((o) => [o.metadata.name, cell(keysOf(o).join(",")), ...trailingCells(o, now)]),
    ),
  );
}
