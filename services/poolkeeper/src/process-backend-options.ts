import type { Logger } from "@fizz/kit";
import type { BackendInstance, OutputStream } from "./backend";
import type { IsolationOptions } from "./isolation";
import type { LineGate } from "./lines";
import type { Interpreters } from "./runtime-commands";
import type { InstanceAgent } from "./instance-http";

export interface ProcessBackendOptions {
  workDir: string;
  /**
   * The package builds' directory (FIZZ_BUILD_DIR): what a dead poolkeeper's builds left there is
   * swept at start as its instances' directories are, when it is in `workDir` (leftovers.ts).
   */
  buildsDir?: string | undefined;
  runtimesDir: string;
  python: string;
  /** PHP, Ruby and Mono (FIZZ_PHP, FIZZ_RUBY, FIZZ_MONO); unset: the bare names on PATH. */
  interpreters?: Partial<Omit<Interpreters, "python">>;
  spawnTimeoutMs: number;
  killGraceMs: number;
  /**
   * The only variables an instance gets besides its own (PATH, LANG, ...): never the
   * poolkeeper's environment, which holds the platform's credentials.
   */
  baseEnv: Record<string, string>;
  isolation: IsolationOptions;
  /** Environments with spec.command run host commands: root-equivalent, off unless enabled. */
  allowEnvCommand: boolean;
  /** Shared keep-alive agent: the health probe's connection is reused by the specialize POST. */
  agent: InstanceAgent;
  logger: Logger;
  /**
   * The log budget of an instance's stream (src/logs): lines over it are dropped before they
   * are decoded. `release` once the instance is gone. Without it every line is passed on.
   */
  outputGate?: (instance: BackendInstance, stream: OutputStream) => LineGate & { release(): void };
  /**
   * How long a taken start's runtime has to announce readiness before /healthz polling starts
   * anyway; ANNOUNCE_GRACE_MS unless set (tests: on a loaded machine a start can take longer, and
   * then the poll may see the instance first).
   */
  announceGraceMs?: number;
  /** How long a refill starts at a low priority at most; REFILL_LOW_PRIORITY_MS unless set (tests). */
  refillLowPriorityMs?: number;
  /**
   * Pool refills of instances with their own uid start through the spawner
   * (runtimes/spawner/fizz_spawner.py): default true; false: always child_process.spawn.
   */
  spawner?: boolean;
}
