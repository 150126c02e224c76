/**
 * The bus side: calls that reach functions through NATS rather than through the HTTP front door.
 *
 * Owns the invoker (invoker/: pulls FIZZ_INVOCATIONS, calls the function, records the status and
 * posts the callback, at-least-once), async HTTP (async-http.ts: `/async-function/` publishes a
 * call and answers 202, `/async-calls/` reads its status), message-queue triggers (mq-triggers.ts
 * keeps the trigger table, mqt/ runs one subscription or pull consumer per trigger), the limiter
 * that keeps bus calls to their share of a function, and the bus's settings and metrics.
 *
 * Exports `startBus` (wired by ../index.ts) and its settings. It borrows the lease manager and the
 * shared header and error helpers from ../front-door (through its index only); the front door
 * never imports this side.
 */
export { startBus, type Bus, type BusOptions } from "./start-bus";
export { loadBusConfig, type BusConfig } from "./bus-config";
