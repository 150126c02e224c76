import { pino, type DestinationStream, type Logger } from "pino";
import { currentScope, logBindings } from "./tracing/scope";

export type { Logger };

/**
 * One root logger per process; components take `logger.child({ component })`. A line written
 * inside a request scope (tracing/scope.ts: a NATS request or event that carried a trace) gets
 * `traceId` and `requestId`, built only when a line is written. pino merges into what the mixin
 * returns, so it is a fresh object per line.
 */
export function createLogger(
  service: string,
  level: string = "info",
  /** Where lines go (stdout by default; tests capture them). */
  destination?: DestinationStream,
): Logger {
  const opts = { level, base: { service }, mixin: scopeMixin };
  return destination === undefined ? pino(opts) : pino(opts, destination);
}

function scopeMixin(): object {
  const s = currentScope();
  return s === undefined ? {} : logBindings(s.trace, s.requestId);
}

/** A logger that drops everything (tests that do not look at logs). */
export function silentLogger(): Logger {
  return pino({ level: "silent" });
}
