import type { Logger } from "./logger";
import type { TracingConfig } from "./tracing/config";
import { startTracing, stopTracing } from "./tracing/index";
import { OFF_TRACER, type Tracer } from "./tracing/tracer";

export interface Stoppable {
  stop(): Promise<void>;
}

/**
 * The body of every service's main.ts: start, then on SIGINT/SIGTERM stop gracefully (drain), with
 * a hard deadline so a stuck drain cannot keep a pod in Terminating forever.
 */
export async function runService(
  logger: Logger,
  start: (signal: AbortSignal) => Promise<Stoppable>,
  opts: {
    drainTimeoutMs?: number;
    exitWithStdin?: boolean;
    /** Span export for this service (`fizz-<service>`), flushed after the service stopped. */
    tracing?: { config: TracingConfig | undefined; service: string };
  } = {},
): Promise<void> {
  const abort = new AbortController();
  let service: Stoppable | undefined;
  let tracing: Tracer = OFF_TRACER;
  let stopping = false;
  const stop = (sig: string) => {
    if (stopping) return;
    stopping = true;
    abort.abort();
    logger.info({ signal: sig }, "stopping");
    const deadline = setTimeout(() => {
      logger.error("drain timed out; exiting");
      process.exit(1);
    }, opts.drainTimeoutMs ?? 15_000);
    deadline.unref();
    void (service?.stop() ?? Promise.resolve())
      .then(() => stopTracing(tracing, logger))
      .then(
        () => process.exit(0),
        (err: unknown) => {
          logger.error({ err }, "stop failed");
          process.exit(1);
        },
      );
  };
  process.on("SIGINT", () => stop("SIGINT"));
  process.on("SIGTERM", () => stop("SIGTERM"));
  if (opts.exitWithStdin) {
    // The launcher (`npm start`, tests) holds our stdin open; when it dies, even by SIGKILL, stdin
    // closes and we stop, so no service outlives the platform that started it.
    process.stdin.on("end", () => stop("parent-exit"));
    process.stdin.on("error", () => stop("parent-exit"));
    process.stdin.resume();
  }
  try {
    if (opts.tracing)
      tracing = await startTracing(opts.tracing.config, opts.tracing.service, logger);
    service = await start(abort.signal);
    if (stopping) await service.stop();
  } catch (err) {
    // A stop signal during start aborts it: that is a clean stop, not a failure.
    if (stopping) process.exit(0);
    logger.fatal({ err }, "failed to start");
    process.exit(1);
  }
}
