/**
 * When timers fire, computed with the scheduler's own parser (`parseSchedule` from @fizz/events),
 * so what `fizz timer showschedule` prints is what the scheduler will do, `@every` ticks included.
 */
import { Option, type Command } from "commander";
import type { Schedule } from "@fizz/events";
import { reportEmpty, type ContextFactory } from "../context.js";
import { parseCount } from "../options.js";
import { printJson, renderTable } from "../output.js";
import type { TimeTrigger } from "../types.js";
import { fissionFlags } from "./fission-flags.js";

/** Loaded on demand: the parser brings zod and croner, which no other command needs at start. */
async function loadParser(): Promise<(expr: string, now: Date) => Schedule> {
  const { checkSchedule, parseSchedule } = await import("@fizz/events");
  // The registry's and the scheduler's rule (checkSchedule) for anything that fires at all, so an
  // out-of-range schedule reads as invalid here too; one that never fires still reads "never".
  return (expr, now) => {
    const schedule = parseSchedule(expr);
    return schedule.next(now, 1).length > 0 ? checkSchedule(expr, now) : schedule;
  };
}

/** The next firing times, or why there are none (the CLI may be older than the registry). */
export type Upcoming = { nextRuns: string[] } | { error: string };

export async function upcoming(cron: string, now: number, count: number): Promise<Upcoming> {
  const parse = await loadParser();
  try {
    return {
      nextRuns: parse(cron, new Date(now))
        .next(new Date(now), count)
        .map((d) => d.toISOString()),
    };
  } catch (err) {
    return { error: (err as Error).message };
  }
}

/** `2025-01-01T12:15:00Z`: UTC, without the milliseconds a schedule never has. */
export function formatRun(iso: string): string {
  return iso.replace(/\.000Z$/, "Z");
}

/** One table cell: the runs, `never`, or the parser's complaint. */
export function describeUpcoming(u: Upcoming): string {
  if ("error" in u) return `invalid: ${u.error}`;
  return u.nextRuns.length === 0 ? "never" : u.nextRuns.map(formatRun).join(", ");
}

interface ShowOptions {
  name?: string;
  cron?: string;
  count: number;
}

type Row = { namespace?: string; name?: string; function?: string; cron: string } & Upcoming;

export function registerShowSchedule(timer: Command, context: ContextFactory): void {
  const show = timer
    .command("showschedule")
    .alias("show")
    .description(
      "print when the timers of the namespace (or one timer, or a cron expression) fire next",
    )
    .option("--name <name>", "only this timer")
    .addOption(
      new Option(
        "--cron <expression>",
        "check an expression before creating a timer (no registry call)",
      ).conflicts("name"),
    )
    .option("--count <n>", "how many firing times to show, 1-100", parseCount, 3)
    .addHelpText(
      "after",
      `
Times are UTC, computed in this machine's time zone for cron fields (the scheduler uses its own;
containers run in UTC). Examples:
  fizz timer showschedule
  fizz timer showschedule --name nightly --count 5
  fizz timer showschedule --cron '*/15 9-17 * * 1-5'`,
    );
  fissionFlags(show, { aliases: { "--round <n>": "--count" } }).action(
    async (opts: ShowOptions, cmd: Command) => {
      const ctx = context(cmd);
      const now = ctx.now();
      let rows: Row[];
      if (opts.cron !== undefined) {
        const next = await upcoming(opts.cron, now, opts.count);
        if ("error" in next)
          cmd.error(`error: option '--cron <expression>': ${next.error}`, { exitCode: 2 });
        rows = [{ cron: opts.cron, ...next }];
      } else {
        const timers =
          opts.name !== undefined
            ? [await ctx.registry.get<TimeTrigger>("timetriggers", opts.name)]
            : (await ctx.registry.list<TimeTrigger>("timetriggers")).items;
        rows = await Promise.all(
          timers.map(async (t) => ({
            namespace: t.metadata.namespace,
            name: t.metadata.name,
            function: t.spec.function,
            cron: t.spec.cron,
            ...(await upcoming(t.spec.cron, now, opts.count)),
          })),
        );
      }
      if (ctx.output === "json") return printJson(ctx.stdout, { items: rows });
      if (rows.length === 0) return reportEmpty(ctx, "timers");
      ctx.stdout.write(
        renderTable(
          ["TIMER", "CRON", "NEXT RUNS"],
          rows.map((r) => [r.name ?? "-", r.cron, describeUpcoming(r)]),
        ),
      );
    },
  );
}
