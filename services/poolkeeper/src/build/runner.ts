import { ARCHIVE_MAX_BYTES, type Environment } from "@fizz/events";
import type { LogTail } from "./log-tail";

/** One build as a backend runs it: a canonical source archive in, a deployment archive out. */
export interface BuildInput {
  /** `<namespace>-<package>`, for directory and pod names. */
  name: string;
  environment: Environment;
  buildCommand: string | undefined;
  /** The source's canonical tar.gz, on local disk. */
  sourceFile: string;
  /** Where the deployment's canonical tar.gz is to be written. */
  outFile: string;
  log: LogTail;
  /** The builder is stopping: end the build at once (it is handed back to the queue). */
  signal: AbortSignal;
}

export type BuildResult =
  | { ok: true; files: number }
  /** `message`: one line for the package status (exit code, time limit, output size...). */
  | { ok: false; message: string };

export interface BuildRunner {
  build(input: BuildInput): Promise<BuildResult>;
  close?(): Promise<void>;
}

/** Thrown (and never reported) when a build ended because the builder is stopping. */
export class BuildStopped extends Error {
  override readonly name = "BuildStopped";
  constructor() {
    super("the builder is stopping");
  }
}

/** The environment's build limits with the schema's defaults. */
export function buildLimits(env: Environment): {
  timeoutSeconds: number;
  maxDeploymentBytes: number;
  env: Record<string, string> | undefined;
} {
  const b = env.spec.builder;
  return {
    timeoutSeconds: b?.timeoutSeconds ?? 300,
    maxDeploymentBytes: b?.maxDeploymentBytes ?? ARCHIVE_MAX_BYTES,
    env: b?.env,
  };
}
