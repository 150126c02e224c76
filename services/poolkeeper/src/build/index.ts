import { mkdir } from "node:fs/promises";
import path from "node:path";
import { jetstream, type Consumer, type JsMsg } from "@nats-io/jetstream";
import {
  BUILD_CONSUMER,
  BUILD_STREAM,
  Codecs,
  type BuildRequest,
  type Environment,
  type EnvironmentRef,
  type Subjects,
} from "@fizz/events";
import {
  backoffMs,
  retryUntil,
  RetryStopped,
  sleep,
  warnWhenSlow,
  type Logger,
  type NatsConnection,
} from "@fizz/kit";
import { openArchiveStore, type ArchiveStore } from "@fizz/kit/archive-store";
import type { PoolkeeperConfig } from "../config";
import { runBuildJob } from "./job";
import { ProcessBuildRunner } from "./process-runner";
import { ACK_WAIT_MS, ensureBuildQueue } from "./queue";
import { BuildStopped, type BuildRunner } from "./runner";

export { ProcessBuildRunner, type ProcessRunnerOptions } from "./process-runner";

/**
 * The runner for the configured backend, or undefined where this poolkeeper builds nothing
 * (FIZZ_BUILD_CONCURRENCY=0).
 */
export function createBuildRunner(
  config: PoolkeeperConfig,
  logger: Logger,
): BuildRunner | undefined {
  if (config.build.concurrency === 0) return undefined;
  // A poolkeeper in a pod never runs user builds in itself: each build gets a builder pod.
  if (config.backend === "kubernetes") return lazyPodRunner(config, logger);
  return new ProcessBuildRunner({
    dir: config.build.dir,
    isolation: config.isolation,
    python: config.python,
    runtimesDir: config.runtimesDir,
    go: config.build.go,
    goEnv: config.build.goEnv,
    killGraceMs: config.killGraceMs,
    baseEnv: config.instanceEnv,
    logger,
  });
}
export type { BuildRunner, BuildInput, BuildResult } from "./runner";

/**
 * The kubernetes backend's PodBuildRunner, loaded at the first build: @kubernetes/client-node is
 * imported only where that backend runs (see createBackend in ../index.ts).
 */
function lazyPodRunner(config: PoolkeeperConfig, logger: Logger): BuildRunner {
  let runner: Promise<BuildRunner> | undefined;
  const load = () =>
    (runner ??= Promise.all([import("./pod-runner"), import("@fizz/kit/kube")]).then(
      ([{ PodBuildRunner }, { loadKubeConfig }]) => {
        const k = config.kubernetes;
        return new PodBuildRunner({
          kubeConfig: loadKubeConfig(k),
          namespace: k.namespace,
          resources: k.resources,
          imagePullPolicy: k.imagePullPolicy,
          runAsUser: k.runAsUser,
          startTimeoutMs: k.startTimeoutMs,
          logger,
        });
      },
    ));
  return {
    build: async (input) => (await load()).build(input),
    close: async () => {
      if (runner) await (await runner).close?.();
    },
  };
}

export interface BuildDeps {
  nc: NatsConnection;
  subjects: Subjects;
  sender: string;
  logger: Logger;
  /** Builds run at once by this poolkeeper (FIZZ_BUILD_CONCURRENCY). */
  concurrency: number;
  /** FIZZ_BUILD_DIR: archives in transit (and, on the process backend, the build directories). */
  dir: string;
  /** Undefined: this poolkeeper builds nothing (the requests wait for another). */
  runner: BuildRunner | undefined;
  lookupEnvironment: (ref: EnvironmentRef) => Promise<Environment | undefined>;
  /** The archive store; opened on `nc` when absent. */
  store?: Pick<ArchiveStore, "get" | "putFile">;
}

export interface Builds {
  /** Resolves once the stream and consumer exist (retried until then), or when stopped first. */
  ready: Promise<void>;
  /** Ends the pulls; builds under way are killed and their requests handed back (nak). */
  stop(): Promise<void>;
}

const noop = () => undefined;

/** Pull requests wait this long for a message before the server ends them. */
const PULL_EXPIRES_MS = 5_000;

/**
 * The builder: `concurrency` workers on the shared durable pull consumer of FIZZ_BUILDS, each
 * taking one build request at a time, so at most `concurrency` builds run here and the rest wait
 * in the stream for whichever poolkeeper is free. A request is acknowledged only after the
 * registry answered its final report; one whose builder dies is redelivered after ACK_WAIT_MS.
 */
export function startBuilds(deps: BuildDeps): Promise<Builds> {
  const log = deps.logger.child({ component: "builder" });
  if (!deps.runner || deps.concurrency < 1) {
    log.info("no builds on this poolkeeper");
    return Promise.resolve({ ready: Promise.resolve(), stop: () => Promise.resolve() });
  }
  const runner: BuildRunner = deps.runner;
  const abort = new AbortController();
  const tmpDir = path.join(deps.dir, ".archives");

  const ready = retryUntil(
    async () => {
      await mkdir(tmpDir, { recursive: true, mode: 0o700 });
      await ensureBuildQueue(deps.nc, deps.subjects);
      const store = deps.store ?? (await openArchiveStore(deps.nc));
      const consumer = await jetstream(deps.nc).consumers.get(BUILD_STREAM.name, BUILD_CONSUMER);
      return { store, consumer };
    },
    {
      signal: abort.signal,
      maxMs: 10_000,
      onRetry: warnWhenSlow(log, "cannot set up the build queue; retrying"),
    },
  );

  const workers = ready.then(
    ({ store, consumer }) => {
      if (abort.signal.aborted) return [];
      log.info({ concurrency: deps.concurrency }, "builder pulling build requests");
      return Promise.all(Array.from({ length: deps.concurrency }, () => worker(consumer, store)));
    },
    () => [],
  );

  async function worker(consumer: Consumer, store: Pick<ArchiveStore, "get" | "putFile">) {
    for (let failures = 0; !abort.signal.aborted;) {
      let m: JsMsg | null;
      try {
        m = await nextOrStop(consumer);
        failures = 0;
      } catch (err) {
        if (abort.signal.aborted) return;
        const wait = backoffMs(failures++, 250, 5_000);
        log.warn({ err: (err as Error).message, retryInMs: wait }, "cannot pull build requests");
        await sleep(wait, abort.signal);
        continue;
      }
      if (m) await handle(m, store);
    }
  }

  /** The next request, or null at once when stopping (a request pulled after that goes back). */
  function nextOrStop(consumer: Consumer): Promise<JsMsg | null> {
    const pulled = consumer.next({ expires: PULL_EXPIRES_MS });
    return new Promise((resolve, reject) => {
      // A request that arrives after this is handed back by the handler below.
      const onAbort = () => resolve(null);
      abort.signal.addEventListener("abort", onAbort, { once: true });
      pulled.then(
        (got) => {
          abort.signal.removeEventListener("abort", onAbort);
          if (abort.signal.aborted) got?.nak();
          resolve(abort.signal.aborted ? null : got);
        },
        (err: unknown) => {
          abort.signal.removeEventListener("abort", onAbort);
          reject(err instanceof Error ? err : new Error(String(err)));
        },
      );
    });
  }

  async function handle(m: JsMsg, store: Pick<ArchiveStore, "get" | "putFile">): Promise<void> {
    let req: BuildRequest;
    try {
      req = Codecs.buildRequested.decode(m.data).data;
    } catch (err) {
      log.error({ err: (err as Error).message }, "dropping a malformed build request");
      m.term();
      return;
    }
    // Tells JetStream the build is alive, so a long one is not handed to another builder.
    const beat = setInterval(() => m.working(), ACK_WAIT_MS / 4);
    try {
      await runBuildJob(req, {
        ...deps,
        runner,
        store,
        tmpDir,
        logger: log,
        signal: abort.signal,
      });
      // Confirmed: a lost ack would have the request built (and reported running) once more.
      await m.ackAck().catch((err: unknown) => {
        log.warn({ err: (err as Error).message }, "build request ack not confirmed");
      });
    } catch (err) {
      if (err instanceof BuildStopped || err instanceof RetryStopped) {
        // Another builder (or this one, restarted) takes it up again.
        m.nak();
        return;
      }
      // The registry refused the report itself: retrying the same build cannot mend that.
      log.error(
        { err, package: `${req.package.namespace}/${req.package.name}` },
        "build report refused; dropping the request",
      );
      m.term();
    } finally {
      clearInterval(beat);
    }
  }

  let stopping: Promise<void> | undefined;
  const stop = () =>
    (stopping ??= (async () => {
      abort.abort();
      await ready.catch(() => undefined);
      await workers;
      await runner.close?.();
      log.info("builder stopped");
    })());

  return Promise.resolve({ ready: ready.then(noop, noop), stop });
}
