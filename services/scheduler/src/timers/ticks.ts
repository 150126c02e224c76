import { createHash } from "node:crypto";
import type { Invocation, Schedule, TimeTrigger } from "@fizz/events";

/** What a timer owes at one moment: the tick to fire now, the ticks given up, the next wake-up. */
export interface TickPlan {
  /** The one tick to fire now: the most recent due tick, if it is within the catch-up window. */
  fire?: number;
  /** Due ticks that will never fire: older than the window, or older than `fire`. */
  missed?: { first: number; count: number | "many" };
  /** The first tick after now (absent when the schedule has no further ticks). */
  next?: number;
}

/** Ticks are whole seconds at the finest, so a window holds at most this many per second. */
const BATCH = 64;

/**
 * Plans one step of a timer whose ticks up to `after` (ms, inclusive) are settled. Due ticks are
 * those in (after, now]; of them only the most recent fires, and only if `now - tick <=
 * catchupMs`: a timer that was not served for a while (no leader, a stalled process, a failing
 * stream) fires at most once when it is served again, never a storm.
 */
export function planTicks(
  schedule: Schedule,
  after: number,
  now: number,
  catchupMs: number,
): TickPlan {
  const first = schedule.next(new Date(after), 1)[0]?.getTime();
  if (first === undefined || !Number.isFinite(first)) return {};
  if (first > now) return { next: first };

  // Only the window is walked, so a timer idle for a day costs no more than one idle for a second.
  const windowFloor = Math.max(after, now - catchupMs - 1);
  const inWindow: number[] = [];
  let cursor = windowFloor;
  let next: number | undefined;
  while (next === undefined) {
    const batch = schedule.next(new Date(cursor), BATCH).map((d) => d.getTime());
    for (const t of batch) {
      if (t > now) {
        next = t;
        break;
      }
      inWindow.push(t);
    }
    const last = batch[batch.length - 1];
    // A schedule that stops advancing (or yields no valid time) must end the walk, not spin on it.
    if (batch.length < BATCH || last === undefined || !(last > cursor)) break;
    cursor = last;
  }

  const fire = inWindow[inWindow.length - 1];
  const plan: TickPlan = next === undefined ? {} : { next };
  if (fire !== undefined) plan.fire = fire;
  const olderThanWindow = first <= windowFloor;
  const skippedInWindow = Math.max(0, inWindow.length - 1);
  if (olderThanWindow || skippedInWindow > 0) {
    plan.missed = {
      first,
      count: olderThanWindow
        ? countEvery(schedule, first, windowFloor, skippedInWindow)
        : skippedInWindow,
    };
  }
  return plan;
}

/** Exact for `@every` (arithmetic); for cron the count past the window is not worth walking. */
function countEvery(
  schedule: Schedule,
  first: number,
  windowFloor: number,
  skippedInWindow: number,
): number | "many" {
  if (schedule.kind !== "every") return "many";
  return Math.floor((windowFloor - first) / schedule.everyMs) + 1 + skippedInWindow;
}

const CALL_ID_MAX = 192; // Invocation.callId max

/**
 * `timer:<ns>:<name>:<tick ISO>`: the same for every replica and every attempt, so JetStream (which
 * takes the callId as message id) drops a second publication of one tick within its duplicate
 * window, whoever publishes it. Names at the DNS-label limit fit the 192 characters a callId may
 * have; a longer form would use a digest of `<ns>/<name>` instead, still deterministic.
 */
export function timerCallId(namespace: string, name: string, tick: number): string {
  const iso = new Date(tick).toISOString();
  const plain = `timer:${namespace}:${name}:${iso}`;
  if (plain.length <= CALL_ID_MAX) return plain;
  const digest = createHash("sha256").update(`${namespace}/${name}`).digest("hex").slice(0, 40);
  return `timer:${digest}:${iso}`;
}

/** The invocation of one tick, as the gateway's invoker will call the function. */
export function timerInvocation(trigger: TimeTrigger, tick: number, createdAt: number): Invocation {
  const { namespace, name } = trigger.metadata;
  const iso = new Date(tick).toISOString();
  return {
    callId: timerCallId(namespace, name, tick),
    namespace,
    function: trigger.spec.function,
    source: "timer",
    trigger: name,
    method: trigger.spec.method,
    path: "/",
    headers: {
      "content-type": trigger.spec.contentType,
      "x-fizz-timer": name,
      "x-fizz-scheduled-time": iso,
    },
    body: trigger.spec.body === undefined ? "" : Buffer.from(trigger.spec.body).toString("base64"),
    maxRetries: 3,
    createdAt,
  };
}
