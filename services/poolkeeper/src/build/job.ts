import { randomBytes } from "node:crypto";
import { createWriteStream } from "node:fs";
import { rm } from "node:fs/promises";
import path from "node:path";
import { pipeline } from "node:stream/promises";
import type { Readable } from "node:stream";
import {
  Codecs,
  FizzError,
  type ArchiveRef,
  type BuildReport,
  type BuildRequest,
  type Environment,
  type EnvironmentRef,
  type Subjects,
} from "@fizz/events";
import {
  request,
  retryUntil,
  warnWhenSlow,
  type Logger,
  type NatsConnection,
  type RetryOptions,
} from "@fizz/kit";
import type { ArchiveStore } from "@fizz/kit/archive-store";
import { LogTail } from "./log-tail";
import { BuildStopped, type BuildRunner } from "./runner";

export interface BuildJobDeps {
  nc: NatsConnection;
  subjects: Subjects;
  sender: string;
  logger: Logger;
  store: Pick<ArchiveStore, "get" | "putFile">;
  runner: BuildRunner;
  lookupEnvironment: (ref: EnvironmentRef) => Promise<Environment | undefined>;
  /** Root-only directory for the archives in transit. */
  tmpDir: string;
  /** The builder is stopping: the job ends without a final report (the request is redelivered). */
  signal: AbortSignal;
}

const REPORT_TIMEOUT_MS = 10_000;
const MESSAGE_MAX = 1000;

/** Errors that say the registry (or NATS) is away for now, not that the request is wrong. */
export function transient(err: unknown): boolean {
  if (!(err instanceof FizzError)) return true;
  return err.retryable || err.code === "UNAVAILABLE" || err.code === "TIMEOUT";
}

/**
 * One build request, start to end: the environment looked up, `running` reported, the source
 * fetched from the Object Store, built by the runner, the deployment stored, the outcome reported.
 * Resolves once the registry has answered the final report (or the request turned out stale);
 * rejects only when the builder stops (BuildStopped or kit's RetryStopped).
 */
export async function runBuildJob(req: BuildRequest, deps: BuildJobDeps): Promise<void> {
  const pkg = `${req.package.namespace}/${req.package.name}`;
  const log = deps.logger.child({ package: pkg, revision: req.package.revision });
  const retry = (what: string): RetryOptions => ({
    signal: deps.signal,
    retryable: transient,
    maxMs: 10_000,
    onRetry: warnWhenSlow(log, `${what}; retrying`),
  });
  const report = async (r: Omit<BuildReport, "package" | "sourceDigest">) => {
    const full: BuildReport = { package: req.package, sourceDigest: req.source.digest, ...r };
    const reply = await retryUntil(
      () =>
        request(deps.nc, deps.subjects.registryBuildReport, Codecs.registryBuildReport, full, {
          sender: deps.sender,
          timeoutMs: REPORT_TIMEOUT_MS,
        }),
      retry("the registry does not take the build report"),
    );
    return reply.applied;
  };

  const env = await retryUntil(
    () => deps.lookupEnvironment(req.environment),
    retry("cannot look the environment up"),
  );
  const started = Date.now();
  const output = new LogTail();
  const final = async (outcome: Outcome) => {
    if (outcome.state === "failed") log.info({ message: outcome.message }, "build failed");
    else log.info({ deployment: outcome.deployment.digest }, "build succeeded");
    await report({ ...outcome, log: output.text(), durationMs: Date.now() - started });
  };
  if (!env)
    return final(
      failed(`environment ${req.environment.namespace}/${req.environment.name} does not exist`),
    );
  if (!(await report({ state: "running" }))) {
    log.info("the package changed since this build was asked for; skipped");
    return;
  }
  log.info({ source: req.source.digest }, "build started");

  const id = randomBytes(6).toString("hex");
  const files = {
    source: path.join(deps.tmpDir, `${id}.source.tar.gz`),
    out: path.join(deps.tmpDir, `${id}.deployment.tar.gz`),
  };
  let outcome: Outcome;
  try {
    outcome = await produce(req, env, deps, output, files, retry);
  } catch (err) {
    if (deps.signal.aborted) throw err instanceof BuildStopped ? err : new BuildStopped();
    log.error({ err }, "build could not run");
    outcome = failed(`build could not run: ${(err as Error).message}`);
  } finally {
    await Promise.all([rm(files.source, { force: true }), rm(files.out, { force: true })]);
  }
  await final(outcome);
}

type Outcome =
  { state: "succeeded"; deployment: ArchiveRef } | { state: "failed"; message: string };

function failed(message: string): Outcome {
  return {
    state: "failed",
    message: message.length > MESSAGE_MAX ? `${message.slice(0, MESSAGE_MAX)}...` : message,
  };
}

async function produce(
  req: BuildRequest,
  env: Environment,
  deps: BuildJobDeps,
  output: LogTail,
  files: { source: string; out: string },
  retry: (what: string) => RetryOptions,
): Promise<Outcome> {
  let src: Readable | null;
  try {
    src = await deps.store.get(req.source.digest);
    if (!src) return failed(`source archive ${req.source.digest} is not in the store`);
    await pipeline(src, createWriteStream(files.source, { mode: 0o600 }));
  } catch (err) {
    if (err instanceof FizzError && err.code === "DIGEST_MISMATCH")
      return failed(`source archive is damaged: ${err.message}`);
    throw err;
  }
  const result = await deps.runner.build({
    name: `${req.package.namespace}-${req.package.name}`,
    environment: env,
    buildCommand: req.buildCommand,
    sourceFile: files.source,
    outFile: files.out,
    log: output,
    signal: deps.signal,
  });
  if (deps.signal.aborted) throw new BuildStopped();
  if (!result.ok) return failed(result.message);
  const stored = await retryUntil(() => deps.store.putFile(files.out), {
    ...retry("cannot store the deployment"),
    attempts: 5,
  });
  return { state: "succeeded", deployment: { ...stored, files: result.files } };
}
