import { existsSync } from "node:fs";
import path from "node:path";
import { FizzError, isCompiledRuntime, runtimeOfImage } from "@fizz/events";
import { extractArchive, packDirectory } from "@fizz/kit/archive";
import type { Logger } from "@fizz/kit";
import type { IsolationOptions } from "../isolation";
import {
  buildLimits,
  BuildStopped,
  type BuildInput,
  type BuildResult,
  type BuildRunner,
} from "./runner";
import { BuildSandbox, type RunResult } from "./sandbox";
import { buildNotes, buildSteps, findNpmCli, type BuildTools } from "./steps";

export interface ProcessRunnerOptions {
  /** FIZZ_BUILD_DIR: one fresh directory per build under it. */
  dir: string;
  isolation: IsolationOptions;
  /** The interpreter the process backend runs Python instances with (FIZZ_PYTHON). */
  python: string;
  /** runtimes/: Go and C# builds run runtimes/<lang>/build.sh. */
  runtimesDir: string;
  /** The Go toolchain (findGo); undefined: none here, Go builds fail saying so. */
  go?: string | undefined;
  /** The poolkeeper's own GOPROXY etc. (GO_PASSTHROUGH), handed to Go builds. */
  goEnv?: Record<string, string>;
  killGraceMs: number;
  /** PATH, LANG, TZ (the instances' base); the environment's builder.env is added per build. */
  baseEnv: Record<string, string>;
  logger: Logger;
}

/**
 * Builds on this host: the source extracted into a fresh directory, the environment's build step
 * run there as an isolated uid (see BuildSandbox), the result packed as a canonical archive.
 */
export class ProcessBuildRunner implements BuildRunner {
  private readonly sandbox: BuildSandbox;
  private readonly tools: BuildTools;
  private readonly goEnv: Record<string, string>;

  constructor(opts: ProcessRunnerOptions) {
    const npmCli = findNpmCli(process.execPath);
    this.tools = {
      node: process.execPath,
      npmCli,
      python: opts.python,
      runtimesDir: opts.runtimesDir,
      go: opts.go,
    };
    this.goEnv = opts.goEnv ?? {};
    this.sandbox = new BuildSandbox({
      root: opts.dir,
      isolation: opts.isolation,
      killGraceMs: opts.killGraceMs,
      baseEnv: opts.baseEnv,
      reach: [
        path.dirname(process.execPath),
        path.dirname(opts.python),
        ...(npmCli ? [path.dirname(npmCli)] : []),
        // build.sh and what it reads (a Go build-cache seed under runtimes/go/.build).
        opts.runtimesDir,
        ...(opts.go ? [path.dirname(opts.go)] : []),
      ],
      logger: opts.logger,
    });
  }

  async build(input: BuildInput): Promise<BuildResult> {
    const limits = buildLimits(input.environment);
    const ws = await this.sandbox.open(input.name);
    try {
      try {
        await extractArchive({ path: input.sourceFile }, ws.srcDir);
      } catch (err) {
        // Only a rule the upload broke is the user's to fix (ArchiveError, by code: the class
        // lives in a chunk loaded on first use). Anything else (a full disk, a read that failed)
        // is the platform's: the job reports that the build could not run and logs it.
        if (err instanceof FizzError && err.code === "ARCHIVE_UNSAFE")
          return { ok: false, message: `source archive refused: ${err.message}` };
        throw err;
      }
      // Decided before any build code runs, from the files as uploaded.
      const runtime = runtimeOfImage(input.environment.spec.image);
      const has = (f: string) => existsSync(path.join(ws.srcDir, f));
      const steps = buildSteps({
        runtime,
        buildCommand: input.buildCommand,
        srcDir: ws.srcDir,
        outDir: ws.outDir,
        tools: this.tools,
        has,
      });
      for (const line of buildNotes({ runtime, buildCommand: input.buildCommand, has }))
        input.log.note(line);
      await ws.handOver();
      const deadline = Date.now() + limits.timeoutSeconds * 1000;
      for (const step of steps) {
        input.log.note(`$ ${step.label}`);
        const r = await ws.run(step.argv, {
          cwd: ws.srcDir,
          env: ws.env(
            runtime === "go" ? { ...this.goEnv, ...limits.env } : limits.env,
            step.env,
            step.pathDirs,
          ),
          deadline,
          log: input.log,
          signal: input.signal,
        });
        if (r.aborted) throw new BuildStopped();
        const failed = describeFailure(r, step.label, limits.timeoutSeconds);
        if (failed) {
          input.log.note(failed);
          return { ok: false, message: failed };
        }
      }
      if (steps.length === 0) input.log.note("nothing to build: the source is the deployment");
      // Nothing of the build may run while its output is read.
      await ws.quiesce();
      let dir: string;
      try {
        dir = await ws.deploymentDir();
      } catch (err) {
        return { ok: false, message: (err as Error).message };
      }
      try {
        const packed = await packDirectory(dir, input.outFile, {
          maxBytes: limits.maxDeploymentBytes,
          // Stored, not deflated: inflating a compiled binary is most of its cold start.
          ...(isCompiledRuntime(runtime) ? { gzipLevel: 0 } : {}),
        });
        if (packed.skipped.length > 0)
          input.log.note(
            `left out of the deployment (links, devices, fifos): ${packed.skipped.slice(0, 20).join(", ")}${packed.skipped.length > 20 ? ", ..." : ""}`,
          );
        input.log.note(
          `deployment: ${path.basename(dir)}/, ${packed.files} files, ${packed.size} bytes`,
        );
        return { ok: true, files: packed.files };
      } catch (err) {
        if (err instanceof FizzError && err.code === "PAYLOAD_TOO_LARGE")
          return {
            ok: false,
            message: `output over ${limits.maxDeploymentBytes} bytes (builder.maxDeploymentBytes)`,
          };
        if (err instanceof FizzError && err.code === "ARCHIVE_UNSAFE")
          return { ok: false, message: `deployment refused: ${err.message}` };
        throw err;
      }
    } finally {
      await ws.dispose();
    }
  }
}

function describeFailure(r: RunResult, step: string, timeoutSeconds: number): string | undefined {
  const label = step.length > 60 ? `${step.slice(0, 57)}...` : step;
  if (r.timedOut) return `timed out after ${timeoutSeconds}s (builder.timeoutSeconds)`;
  if (r.spawnError) return `could not start ${label}: ${r.spawnError}`;
  if (r.signal) return `${label} was killed by ${r.signal}`;
  if (r.code !== 0) return `${label} exited with code ${r.code ?? "?"}`;
  return undefined;
}
