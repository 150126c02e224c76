/**
 * `fizz route ...` (also `httptrigger`, `ht`): HTTP triggers map gateway requests (host, path or
 * prefix, methods) to a function.
 */
import { InvalidArgumentError, Option, type Command } from "commander";
import { confirm, reportEmpty, type Context, type ContextFactory } from "../context.js";
import { collectMethods } from "../options.js";
import { cell, printJson, renderTable } from "../output.js";
import { renderObject, trailingCells } from "../present.js";
import type { HttpTrigger, HttpTriggerSpec } from "../types.js";
import { deleteAction } from "./delete-action.js";
import { fissionFlags, listCommand, withIgnoreNotFound } from "./fission-flags.js";
import { ROUTE_UNSUPPORTED, SPEC_FLAGS } from "./fission-names.js";

interface NameOptions {
  name: string;
}

interface SpecOptions {
  function?: string;
  url?: string;
  prefix?: string;
  method?: string[];
  host?: string;
}

/** PATCH merges `spec`; a null removes a field, which is how a path becomes a prefix. */
type SpecPatch = { [K in keyof HttpTriggerSpec]?: HttpTriggerSpec[K] | null };

export function registerRouteCommands(program: Command, context: ContextFactory): void {
  const route = program
    .command("route")
    .aliases(["httptrigger", "ht"])
    .description("manage routes (HTTP triggers): which requests reach which function")
    .addHelpText(
      "after",
      `
Examples:
  fizz route create --function hello --url /hello --method GET
  fizz route create --name users --function users --url '/users/{id}' --method GET --method DELETE
  fizz route create --name static --function files --prefix /static --host cdn.example.com`,
    );

  fissionFlags(
    withSpecOptions(
      route
        .command("create")
        .description("create a route to a function")
        .option("--name <name>", "route name (default: the function's name)")
        .requiredOption("--function <function>", "function to call (same namespace)", oneFunction),
    ),
    { unsupported: { ...ROUTE_UNSUPPORTED, ...SPEC_FLAGS }, accepted: ["--keepprefix"] },
  ).action(
    async (opts: Partial<NameOptions> & SpecOptions & { function: string }, cmd: Command) => {
      if (opts.url === undefined && opts.prefix === undefined) {
        cmd.error("error: give the route's --url (exact path) or --prefix", { exitCode: 2 });
      }
      const ctx = context(cmd);
      const name = opts.name ?? opts.function;
      const created = await ctx.registry.create<HttpTrigger>("httptriggers", {
        name,
        spec: specFrom(opts),
      });
      confirm(ctx, created, `route "${name}" created: ${describeRoute(created.spec)}`);
    },
  );

  route
    .command("get")
    .description("show one route")
    .requiredOption("--name <name>", "route name")
    .action(async (opts: NameOptions, cmd: Command) => {
      const ctx = context(cmd);
      const found = await ctx.registry.get<HttpTrigger>("httptriggers", opts.name);
      if (ctx.output === "json") printJson(ctx.stdout, found);
      else ctx.stdout.write(renderRoute(ctx, found));
    });

  listCommand(route, "routes")
    .option("--function <function>", "only the routes to this function")
    .action(async (opts: { function?: string }, cmd: Command) => {
      const ctx = context(cmd);
      const list = await ctx.registry.list<HttpTrigger>("httptriggers");
      if (opts.function === undefined) return printList(ctx, list.items, list);
      const items = list.items.filter((t) => t.spec.function === opts.function);
      printList(ctx, items, { ...list, items });
    });

  fissionFlags(
    withSpecOptions(
      route
        .command("update")
        .description("change a route; only the given fields change")
        .requiredOption("--name <name>", "route name")
        .option("--function <function>", "function to call", oneFunction),
    ),
    { unsupported: ROUTE_UNSUPPORTED, accepted: ["--keepprefix"] },
  ).action(async (opts: NameOptions & SpecOptions, cmd: Command) => {
    const spec: SpecPatch = specFrom(opts);
    if (Object.keys(spec).length === 0) {
      cmd.error(
        "error: nothing to update: give at least one of --function, --url, --prefix, --method, --host",
        { exitCode: 2 },
      );
    }
    const ctx = context(cmd);
    let revision: number | undefined;
    if (opts.url !== undefined || opts.prefix !== undefined) {
      // A route has exactly one of path and prefix, so switching kinds must clear the other.
      // Read first and pin the revision, so a concurrent edit is refused instead of merged.
      const current = await ctx.registry.get<HttpTrigger>("httptriggers", opts.name);
      revision = current.metadata.revision;
      if (opts.url !== undefined && current.spec.prefix !== undefined) spec.prefix = null;
      if (opts.prefix !== undefined && current.spec.path !== undefined) spec.path = null;
    }
    const updated = await ctx.registry.update<HttpTrigger>("httptriggers", opts.name, {
      spec,
      ...(revision === undefined ? {} : { revision }),
    });
    confirm(ctx, updated, `route "${opts.name}" updated (revision ${updated.metadata.revision})`);
  });

  fissionFlags(
    withIgnoreNotFound(
      route
        .command("delete")
        .alias("rm")
        .description("delete a route")
        .requiredOption("--name <name>", "route name"),
    ),
    {
      unsupported: {
        "--function <function>":
          "delete routes one at a time with --name (fizz route list --function <fn> lists them)",
      },
    },
  ).action(deleteAction(context, "httptriggers", "route"));
}

/** Fission splits traffic between repeated --function flags; a fizz route calls one function. */
function oneFunction(value: string, previous: string | undefined): string {
  if (previous !== undefined && previous !== value) {
    throw new InvalidArgumentError(
      "a route calls one function: give --function once (Fission's weighted routes are not supported)",
    );
  }
  return value;
}

function withSpecOptions(cmd: Command): Command {
  return cmd
    .addOption(
      new Option("--url <path>", "exact path; segments may be {params}: /users/{id}").conflicts(
        "prefix",
      ),
    )
    .option("--prefix <path>", "match this path prefix and everything under it")
    .option("--method <method>", "HTTP method to accept; repeatable (default: all)", collectMethods)
    .option("--host <host>", "only match requests with this Host header");
}

function specFrom(opts: SpecOptions): Partial<HttpTriggerSpec> {
  const spec: Partial<HttpTriggerSpec> = {};
  if (opts.function !== undefined) spec.function = opts.function;
  if (opts.url !== undefined) spec.path = opts.url;
  if (opts.prefix !== undefined) spec.prefix = opts.prefix;
  if (opts.method !== undefined) spec.methods = opts.method;
  if (opts.host !== undefined) spec.host = opts.host;
  return spec;
}

/** `GET,POST /hello -> hello`, `* api.example.com/static/* -> files`: one route on one line. */
export function describeRoute(spec: HttpTriggerSpec): string {
  return `${methodsOf(spec)} ${spec.host ?? ""}${matchOf(spec)} -> ${spec.function}`;
}

function methodsOf(spec: HttpTriggerSpec): string {
  return spec.methods && spec.methods.length > 0 ? spec.methods.join(",") : "*";
}

function matchOf(spec: HttpTriggerSpec): string {
  if (spec.path !== undefined) return spec.path;
  if (spec.prefix !== undefined) return `${spec.prefix.replace(/\/+$/, "")}/*`;
  return "";
}

function printList(ctx: Context, items: HttpTrigger[], raw: unknown): void {
  if (ctx.output === "json") return printJson(ctx.stdout, raw);
  if (items.length === 0) return reportEmpty(ctx, "routes");
  const now = ctx.now();
  ctx.stdout.write(
    renderTable(
      ["NAME", "FUNCTION", "METHODS", "HOST", "PATH", "PREFIX", "REVISION", "AGE"],
      items.map((t) => [
        t.metadata.name,
        cell(t.spec.function),
        methodsOf(t.spec),
        t.spec.host ?? "*",
        cell(t.spec.path),
        cell(t.spec.prefix),
        ...trailingCells(t, now),
      ]),
    ),
  );
}

function renderRoute(ctx: Context, t: HttpTrigger): string {
  return renderObject(
    t,
    [
      ["Function", cell(t.spec.function)],
      ["Methods", methodsOf(t.spec) === "*" ? "* (all)" : methodsOf(t.spec)],
      ["Host", t.spec.host ?? "* (any)"],
      t.spec.prefix !== undefined ? ["Prefix", t.spec.prefix] : ["Path", cell(t.spec.path)],
      ["URL", routeUrl(ctx, t.spec)],
    ],
    ctx.now(),
  );
}

/** Where to send a request to hit this route through the local gateway. */
function routeUrl(ctx: Context, spec: HttpTriggerSpec): string {
  const url = `${ctx.gatewayUrl}${matchOf(spec)}`;
  return spec.host ? `${url} (with Host: ${spec.host})` : url;
}
