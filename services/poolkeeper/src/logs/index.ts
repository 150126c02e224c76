import { Codecs, type Subjects } from "@fizz/events";
import {
  backgroundClock,
  ensureLogStream,
  retryUntil,
  warnWhenSlow,
  type Logger,
  type NatsConnection,
} from "@fizz/kit";
import type { Registry } from "prom-client";
import type { LogConfig } from "../config";
import type { Tracked } from "../instances";
import { MAX_LINE } from "../lines";
import { LogCapture } from "./capture";
import { createLogMetrics } from "./log-metrics";
import { Masker, platformSecrets, SecretBook } from "./mask";

export { LogCapture, exitLine } from "./capture";
export { SecretBook, Masker } from "./mask";

export interface FunctionLogs {
  capture: LogCapture;
  /** Wrap the specializer's config resolver with `book.watch`: what it fetches gets masked. */
  book: SecretBook;
  /** Resolves once FIZZ_LOGS exists with our limits (retried until JetStream answers). */
  streamReady: Promise<void>;
  /**
   * `logger` with every string field masked (all known secret values, the NATS password): for
   * code that logs what an instance said, like a load failure's message quoting the function.
   */
  maskedLogger(logger: Logger): Logger;
  stop(): void;
}

/**
 * Function log capture for one poolkeeper: lines go out as core publishes on
 * `logs.<ns>.<fn>` (the FIZZ_LOGS stream, created here, keeps them); nothing waits per line.
 */
export function startFunctionLogs(opts: {
  nc: NatsConnection;
  subjects: Subjects;
  sender: string;
  config: LogConfig;
  natsUrl: string;
  registry: Registry;
  tracked(id: string): Tracked | undefined;
  logger: Logger;
  /** Stops the stream set-up (a start given up). */
  signal: AbortSignal;
}): FunctionLogs {
  const log = opts.logger.child({ component: "function-logs" });
  const abort = new AbortController();
  opts.signal.addEventListener("abort", () => abort.abort(), { once: true });
  const book = new SecretBook();
  const platform = platformSecrets(opts.natsUrl);
  let masker: { generation: number; masker: Masker } | undefined;
  const maskAll = (text: string) => {
    if (masker?.generation !== book.generation)
      masker = {
        generation: book.generation,
        masker: new Masker([...platform, ...book.allValues()]),
      };
    return masker.masker.mask(text);
  };
  const capture = new LogCapture({
    publish: (fn, line) => {
      try {
        opts.nc.publish(
          opts.subjects.logs(fn.namespace, fn.name),
          Codecs.logs.encode(line, opts.sender),
        );
      } catch {
        // The connection is closed (stopping): the line has nowhere to go.
      }
    },
    tracked: (id) => opts.tracked(id),
    limits: opts.config,
    totalLimits: {
      linesPerSecond: opts.config.totalLinesPerSecond,
      bytesPerSecond: opts.config.totalBytesPerSecond,
      burstSeconds: opts.config.burstSeconds,
    },
    maxLineBytes: MAX_LINE,
    book,
    platformSecrets: platform,
    metrics: createLogMetrics(opts.registry),
    logger: opts.logger,
    clock: backgroundClock,
    echo: opts.config.echo,
  });
  const limits = {
    maxAgeMs: opts.config.maxAgeMs,
    maxBytes: opts.config.maxBytes,
    maxMsgsPerSubject: opts.config.maxLinesPerFunction,
  };
  const streamReady = retryUntil(() => ensureLogStream(opts.nc, opts.subjects, limits), {
    signal: abort.signal,
    maxMs: 10_000,
    onRetry: warnWhenSlow(log, "cannot set up the FIZZ_LOGS stream; retrying"),
  }).then(
    () => log.debug(limits, "FIZZ_LOGS stream ready"),
    () => undefined,
  );
  return {
    capture,
    book,
    streamReady,
    maskedLogger: (logger) =>
      logger.child(
        {},
        {
          formatters: {
            log: (fields: object) => {
              const out: Record<string, unknown> = {};
              for (const [k, v] of Object.entries(fields))
                out[k] = typeof v === "string" ? maskAll(v) : v;
              return out;
            },
          },
        },
      ),
    stop() {
      abort.abort();
      capture.close();
    },
  };
}
