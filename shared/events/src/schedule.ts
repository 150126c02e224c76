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

/** The shortest `@every`: ticks are whole seconds at the finest. */
export const MIN_EVERY_MS = 1000;
/** The longest `@every`: a year and a day, so a yearly job fits and nothing overflows a Date. */
export const MAX_EVERY_MS = 366 * 24 * 3_600_000;
/** A schedule must fire within this long of now, or it is a mistake (`0 0 30 2 *` never does). */
export const FIRST_FIRE_HORIZON_MS = 5 * 366 * 24 * 3_600_000;
/** The latest instant a Date can hold; a tick past it would be an Invalid Date (NaN). */
const MAX_TIME = 8.64e15;

/**
 * Milliseconds, possibly huge or Infinity: the syntax is all this judges, so a timer stored with
 * an absurd interval still reads as a timer (listed, then refused by `checkSchedule`).
 */
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

/**
 * Parses a schedule's syntax or throws an Error whose message says what is wrong. The ticks it
 * yields are always valid Dates in increasing order, however large the interval: a stored
 * schedule that slipped past `checkSchedule` can make a timer idle, never loop or grow unbounded.
 */
export function parseSchedule(expr: string): Schedule {
  const text = expr.trim();
  const every = /^@every\s+(\S+)$/.exec(text);
  if (every) {
    const ms = parseDuration(every[1]!);
    if (ms === undefined || ms < MIN_EVERY_MS) {
      throw new Error(`"${expr}": @every needs a duration of at least 1s, like 30s, 5m or 1h30m`);
    }
    return {
      kind: "every",
      everyMs: ms,
      // Aligned to the epoch, so every replica computes the same ticks.
      next: (after, count) => {
        const from = after.getTime();
        if (!Number.isFinite(from)) return [];
        const first = Math.floor(from / ms) * ms + ms;
        const out: Date[] = [];
        for (let i = 0; i < count; i++) {
          const t = first + i * ms;
          if (!(t <= MAX_TIME)) break;
          out.push(new Date(t));
        }
        return out;
      },
    };
  }
  let cron: Cron;
  try {
    cron = new Cron(text, { paused: true, mode: "5-or-6-parts", timezone: "UTC" });
  } catch (err) {
    throw new Error(`"${expr}": ${(err as Error).message}`);
  }
  return {
    kind: "cron",
    expr: text,
    next: (after, count) =>
      Number.isFinite(after.getTime())
        ? cron.nextRuns(count, after).filter((d) => Number.isFinite(d.getTime()))
        : [],
  };
}

/**
 * What a timer may run: the syntax, an `@every` between 1 s and 366 days, and a first tick within
 * five years of `now`. The registry refuses anything else on every write, and the scheduler
 * applies this same function to each timer it meets (one written before these limits, or straight
 * into the store) and leaves the ones it refuses unfired, so the two can never disagree.
 * Throws an Error whose message says why.
 */
export function checkSchedule(expr: string, now: Date = new Date()): Schedule {
  const schedule = parseSchedule(expr);
  if (schedule.kind === "every" && !(schedule.everyMs <= MAX_EVERY_MS)) {
    throw new Error(`"${expr}": @every may be at most 366 days (8784h)`);
  }
  const first = schedule.next(now, 1)[0];
  if (first === undefined) throw new Error(`"${expr}" never fires`);
  if (first.getTime() - now.getTime() > FIRST_FIRE_HORIZON_MS) {
    throw new Error(`"${expr}" does not fire within 5 years (next: ${first.toISOString()})`);
  }
  return schedule;
}

/** Syntax only: the stored form, which every service must still be able to read and list. */
export function isValidSchedule(expr: string): boolean {
  try {
    parseSchedule(expr);
    return true;
  } catch {
    return false;
  }
}
