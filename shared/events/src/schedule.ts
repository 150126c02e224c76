import { Cron } from "croner";

/**
 * Timer schedules: cron with an optional seconds field (5 or 6 fields), the usual nicknames
 * (`@hourly`, `@daily`, ...), or `@every <duration>` (`@every 30s`, `@every 1h30m`); cron fields are
 * read in UTC wherever the parser runs, so replicas and the CLI agree. One parser,
 * used by the registry to refuse a bad expression, by the scheduler to fire, and by the CLI's
 * `timer showschedule`, so all three agree on what an expression means.
 */
export type Schedule =
  | { kind: "cron"; expr: string; next(after: Date, count: number): Date[] }
  | { kind: "every"; everyMs: number; next(after: Date, count: number): Date[] };

const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

export function parseDuration(text: string): number | undefined {
  const re = /(\d+)(ms|s|m|h)/g;
  let total = 0;
  let consumed = 0;
  for (const m of text.matchAll(re)) {
    total += Number(m[1]) * UNITS[m[2]!]!;
    consumed += m[0].length;
  }
  return consumed === text.length && total > 0 ? total : undefined;
}

/** Parses a schedule or throws an Error whose message says what is wrong. */
export function parseSchedule(expr: string): Schedule {
  const text = expr.trim();
  const every = /^@every\s+(\S+)$/.exec(text);
  if (every) {
    const ms = parseDuration(every[1]!);
    if (ms === undefined || ms < 1000) {
      throw new Error(`"${expr}": @every needs a duration of at least 1s, like 30s, 5m or 1h30m`);
    }
    return {
      kind: "every",
      everyMs: ms,
      // Aligned to the epoch, so every replica computes the same ticks.
      next: (after, count) => {
        const first = Math.floor(after.getTime() / ms) * ms + ms;
        return Array.from({ length: count }, (_, i) => new Date(first + i * ms));
      },
    };
  }
  let cron: Cron;
  try {
    cron = new Cron(text, { paused: true, mode: "5-or-6-parts", timezone: "UTC" });
  } catch (err) {
    throw new Error(`"${expr}": ${(err as Error).message}`);
  }
  return { kind: "cron", expr: text, next: (after, count) => cron.nextRuns(count, after) };
}

export function isValidSchedule(expr: string): boolean {
  try {
    parseSchedule(expr);
    return true;
  } catch {
    return false;
  }
}
