import {
  FizzError,
  runtimeOfImage,
  type Environment,
  type EnvironmentRef,
  type ErrorCode,
  type FunctionRef,
  type Instance,
  type SpecializeReply,
  type SpecializeRequest,
} from "@fizz/events";
import { currentScope, outsideScope, tracer, type Logger } from "@fizz/kit";
import type { BackendInstance, BackendKind } from "./backend";
import { CodeCache } from "./code-cache";
import type { ConfigResolver } from "./function-config";
import type { Metrics, SpecializeOutcomeLabel } from "./metrics";
import { readsArchiveFile } from "./instance-launch";
import { envKey, toInstance } from "./instances";
import type { Pool } from "./pool";
import { postSpecialize } from "./runtime-client";
import { loadSource, type BlobStore } from "./specialize-source";
import type { InstanceAgent } from "./instance-http";

export interface SpecializerDeps {
  pool: Pool;
  /** The Object Store: single-file code and package archives, by digest. */
  store: BlobStore;
  /** Defaults to a 32 MiB cache of code blobs up to 1 MiB. */
  codeCache?: CodeCache;
  /** The function's secrets and configmaps (registry or Kubernetes); MISSING_CONFIG names one missing. */
  readConfig: ConfigResolver;
  /** Asks the registry about an environment this poolkeeper has not heard of (a missed event). */
  lookupEnvironment(ref: EnvironmentRef): Promise<Environment | undefined>;
  agent: InstanceAgent;
  timeoutMs: number;
  backendKind: BackendKind;
  metrics: Metrics;
  logger: Logger;
  /** Runs work once the reply has been sent: refills and events must never delay it. */
  afterReply(fn: () => void): void;
  onSpecialized(instance: Instance): void;
  /**
   * Function logs (src/logs): an instance's output is its function's from the moment it is taken,
   * so import-time prints and a failing load's output (the runtime prints the error) reach them;
   * `mask` hides known secret values in what an instance said (a load error quoting a secret goes
   * back to the scheduler, the gateway's client and their logs).
   */
  functionLogs?: {
    assign(instanceId: string, fn: FunctionRef): void;
    mask(instance: BackendInstance, fn: FunctionRef, text: string): string;
  };
}

/**
 * The specialize path: the code (a cached blob, or one Object Store read) and the function's
 * config, one POST to a warm instance, the reply. An archive is not read ahead: it streams from
 * the store into the POST. Nothing else waits on it: no spawn (unless the pool is empty, the cold
 * start). A runtime 500 means the user's code is broken, so another instance would fail the same
 * way: no retry. A store failure while streaming is not the instance's fault either: no retry,
 * but the instance (holding part of an upload) is killed. Any other failure is the instance's
 * fault: kill it and try once more with another.
 */
export function createSpecializer(
  deps: SpecializerDeps,
): (req: SpecializeRequest) => Promise<SpecializeReply> {
  const log = deps.logger.child({ component: "specialize" });
  const cache = deps.codeCache ?? new CodeCache();

  async function environmentOf(ref: EnvironmentRef): Promise<void> {
    let known = deps.pool.environment(ref);
    if (!known) {
      let env: Environment | undefined;
      try {
        env = await deps.lookupEnvironment(ref);
      } catch (err) {
        throw new FizzError(
          "UNKNOWN_ENVIRONMENT",
          `environment ${envKey(ref)} is not known here and the registry could not confirm it: ${(err as Error).message}`,
          { field: "environment", retryable: true, cause: err },
        );
      }
      if (!env)
        throw new FizzError("UNKNOWN_ENVIRONMENT", `environment ${envKey(ref)} does not exist`, {
          field: "environment",
        });
      deps.pool.upsert(env);
      known = deps.pool.environment(ref);
    }
    if (known?.unsupported) {
      throw new FizzError("UNKNOWN_IMAGE", `environment ${envKey(ref)}: ${known.unsupported}`, {
        field: "environment",
      });
    }
  }

  return async function specialize(req) {
    const started = performance.now();
    let start: "warm" | "cold" | "none" = "none";
    // Part of the lease's trace: the scope is the one kit's serve entered for this request.
    const span = tracer().startSpan("poolkeeper.specialize", "internal", currentScope()?.trace, {
      "fizz.function": `${req.function.namespace}/${req.function.name}`,
      "fizz.revision": req.function.revision,
    });
    const done = (outcome: SpecializeOutcomeLabel) => {
      span.setAttribute("fizz.outcome", outcome);
      span.setAttribute("fizz.start", start);
      if (outcome !== "ok") span.fail(outcome);
      span.end();
      deps.metrics.specializations.inc({ outcome });
      deps.metrics.specializeSeconds.observe(
        { outcome, start },
        (performance.now() - started) / 1000,
      );
      deps.metrics.functionSpecialized(
        req.function,
        outcome,
        start,
        (performance.now() - started) / 1000,
      );
    };
    const fnName = `${req.function.namespace}/${req.function.name}@${req.function.revision}`;
    try {
      await environmentOf(req.environment);
      // Both before an instance is taken: a missing blob or secret costs no warm instance.
      const [config, source] = await phase("poolkeeper.source", () =>
        Promise.all([
          deps.readConfig(req.function.namespace, req.secrets ?? [], req.configmaps ?? []),
          loadSource(req, { store: deps.store, cache, logger: log }),
        ]),
      );
      source.check(config);

      // Not retryUntil: the second attempt takes another instance at once (no back-off), and the
      // reasons to stop (a load failure, success) are decided inside the body.
      let lastFailure = "";
      for (let attempt = 0; attempt < 2; attempt++) {
        let t = deps.pool.take(req.environment);
        if (t) start = start === "none" ? "warm" : start;
        else {
          start = "cold";
          try {
            // The instance outlives this request: its output must not carry this trace.
            t = await outsideScope(() => deps.pool.spawnTaken(req.environment));
          } catch (err) {
            // The spawn gate turned it away (no slot before the caller's deadline, or stopping):
            // a second try would queue again at the back and boot an instance nobody waits for.
            if (err instanceof FizzError && err.code === "UNAVAILABLE") throw err;
            lastFailure = `could not start an instance: ${(err as Error).message}`;
            log.warn({ function: fnName, err: lastFailure }, "specialize attempt failed");
            continue;
          }
        }
        const id = t.instance.id;
        deps.functionLogs?.assign(id, req.function);
        let payload;
        try {
          // A first attempt only: a second one (after any failure, a corrupt cached copy
          // included) streams the archive through the cache's hash check as before.
          const known = attempt === 0 ? deps.pool.environment(req.environment)?.env : undefined;
          const privateDir =
            known &&
            readsArchiveFile(runtimeOfImage(known.spec.image), !!known.spec.command, t.instance)
              ? t.instance.dir
              : undefined;
          payload = await source.payload({ id, privateDir }, config);
        } catch (err) {
          // Gone from the store since it was checked: the taken instance is unused but taken.
          void deps.pool.kill(id, "specialize failed: nothing to load");
          deps.afterReply(() => deps.pool.refillAfterTake(req.environment));
          throw err;
        }
        const outcome = await phase("poolkeeper.post", () =>
          postSpecialize(
            deps.agent,
            t.instance.address,
            payload,
            t.instance.specializeToken,
            deps.timeoutMs + source.extraTimeoutMs,
          ),
        );
        if (outcome.kind === "source-failed") {
          void deps.pool.kill(id, "the archive could not be read from the store");
          deps.afterReply(() => deps.pool.refillAfterTake(req.environment));
          const e = outcome.error;
          if (e.code === "DIGEST_MISMATCH")
            log.error(
              { function: fnName, digest: req.archive?.digest, err: e.message },
              "archive in the store does not match its digest; refusing to load it",
            );
          else log.warn({ function: fnName, err: e.message }, "could not read the archive");
          throw e.code === "DIGEST_MISMATCH" && e.field === undefined
            ? new FizzError("DIGEST_MISMATCH", e.message, {
                field: "archive.digest",
                retryable: false,
              })
            : e;
        }
        if (outcome.kind === "load-failed") {
          void deps.pool.kill(id, "function failed to load");
          deps.afterReply(() => deps.pool.refillAfterTake(req.environment));
          log.info(
            { function: fnName, instance: id, err: outcome.message },
            "function failed to load",
          );
          const message = deps.functionLogs?.mask(t.instance, req.function, outcome.message);
          throw new FizzError("FUNCTION_LOAD_FAILED", message ?? outcome.message, {
            retryable: false,
          });
        }
        const tracked =
          outcome.kind === "ok"
            ? deps.pool.markSpecialized(id, req.function, req.concurrency)
            : undefined;
        if (tracked) {
          const instance = toInstance(tracked, deps.backendKind);
          // The runtime's own load time, to tell it from the POST's transport in a profile.
          if (outcome.kind === "ok" && outcome.loadMs !== undefined)
            span.setAttribute("fizz.load_ms", outcome.loadMs);
          done("ok");
          deps.afterReply(() => {
            deps.pool.refillAfterTake(req.environment);
            deps.onSpecialized(instance);
          });
          log.debug(
            {
              function: fnName,
              instance: id,
              start,
              loadMs: outcome.kind === "ok" ? outcome.loadMs : undefined,
            },
            "specialized",
          );
          return { instance };
        }
        lastFailure =
          outcome.kind === "instance-failed"
            ? (deps.functionLogs?.mask(t.instance, req.function, outcome.message) ??
              outcome.message)
            : "the instance exited while loading the function";
        log.warn({ function: fnName, instance: id, err: lastFailure }, "specialize attempt failed");
        void deps.pool.kill(id, `specialize failed: ${lastFailure}`);
      }
      deps.afterReply(() => deps.pool.refillAfterTake(req.environment));
      throw new FizzError("INSTANCE_FAILED", `could not specialize ${fnName}: ${lastFailure}`, {
        retryable: true,
      });
    } catch (err) {
      const fe = FizzError.from(err);
      done(outcomeOf(fe));
      throw fe;
    }
  };
}

/** The metric label of a failure; any code not listed here counts as "error". */
const OUTCOME_OF_CODE: Partial<Record<ErrorCode, SpecializeOutcomeLabel>> = {
  FUNCTION_LOAD_FAILED: "load_failed",
  INSTANCE_FAILED: "instance_failed",
  NOT_FOUND: "code_missing",
  DIGEST_MISMATCH: "digest_mismatch",
  MISSING_CONFIG: "missing_config",
  UNKNOWN_ENVIRONMENT: "unknown_environment",
  UNKNOWN_IMAGE: "unsupported",
};

/** A span around one step, only while traces are exported (bench/cold-profile.ts reads them). */
function phase<T>(name: string, fn: () => Promise<T>): Promise<T> {
  const t = tracer();
  if (!t.recording) return fn();
  const span = t.startSpan(name, "internal", currentScope()?.trace);
  return fn().finally(() => span.end());
}

function outcomeOf(err: FizzError): SpecializeOutcomeLabel {
  return OUTCOME_OF_CODE[err.code] ?? "error";
}
