import { pino, type Logger } from "pino";

export type { Logger };

/** One root logger per process; components take `logger.child({ component })`. */
export function createLogger(service: string, level: string = "info"): Logger {
  return pino({ level, base: { service } });
}

/** A logger that drops everything (tests that do not look at logs). */
export function silentLogger(): Logger {
  return pino({ level: "silent" });
}
