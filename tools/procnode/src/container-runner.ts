import { mkdirSync } from "node:fs";
import path from "node:path";
import type { Logger } from "@fizz/kit";
import type { V1Container, V1ContainerState, V1Probe } from "@kubernetes/client-node";
import { rfc3339 } from "./kube";
import { probeOnce, type ProbeTarget } from "./probes";
import type { LogLimits } from "./log-writer";
import { drainLogs, killGroup, startProcess, tail, terminate, type Proc } from "./process";

/** What one start of a container runs. */
export interface RunSpec {
  argv: string[];
  env: Record<string, string>;
  cwd: string;
}

/** The container cannot start yet (or ever): shown as state.waiting with this reason. */
export class WaitError extends Error {
  constructor(
    readonly reason: string,
    message: string,
    /** A fixed retry delay for conditions that clear by themselves (a Service getting a ready pod). */
    readonly retryMs?: number,
  ) {
    super(message);
  }
}

export interface RunnerDeps {
  podName: string;
  podIP: () => string;
  restartPolicy: string;
  /** Init containers restart only on failure and have no probes. */
  init: boolean;
  logDir: string;
  logLimits: LogLimits;
  backoff: { initial: number; max: number };
  graceMs: () => number;
  logger: Logger;
  onChange: () => void;
}

/**
 * One container: start its process, probe it, restart it per restartPolicy with back-off, and keep
 * a kubelet-shaped status (state, lastState, restartCount, ready, started).
 */
export class ContainerRunner {
  state: V1ContainerState = { waiting: { reason: "ContainerCreating" } };
  lastState: V1ContainerState = {};
  restartCount = 0;
  ready = false;
  started = false;
  logFile: string | undefined;
  private proc: Proc | undefined;
  private stopping = false;
  private generation = 0;
  private wake: (() => void) | undefined;

  constructor(
    readonly container: V1Container,
    private readonly deps: RunnerDeps,
  ) {}

  get pid(): number | undefined {
    return this.proc?.child.pid;
  }

  /** True once the container has exited for good (no restart coming). */
  finished = false;

  /**
   * Runs until the container is done for good or stop() is called; returns the last exit code.
   * `prepare` is called before every start (env is resolved afresh, as the kubelet does).
   */
  async run(prepare: () => Promise<RunSpec>): Promise<number> {
    let failures = 0;
    for (;;) {
      if (this.stopping) return this.lastExit();
      let spec: RunSpec;
      try {
        spec = await prepare();
      } catch (err) {
        if (this.stopping) return this.lastExit();
        const reason = err instanceof WaitError ? err.reason : "CreateContainerConfigError";
        this.setState({
          waiting: { reason, message: err instanceof Error ? err.message : String(err) },
        });
        const fixed = err instanceof WaitError ? err.retryMs : undefined;
        await this.sleep(
          fixed ?? Math.min(this.deps.backoff.initial * 2 ** failures++, this.deps.backoff.max),
        );
        continue;
      }
      if (this.stopping) return this.lastExit();
      const startedAt = Date.now();
      const exitCode = await this.runOnce(spec);
      if (this.stopping) return exitCode;
      if (!this.shouldRestart(exitCode)) {
        this.finished = true;
        this.deps.onChange();
        return exitCode;
      }
      // The kubelet resets back-off after a container ran well (2 × the cap); so does procnode.
      if (Date.now() - startedAt > 2 * this.deps.backoff.max) failures = 0;
      const delay = Math.min(this.deps.backoff.initial * 2 ** failures++, this.deps.backoff.max);
      this.lastState = this.state;
      this.setState({
        waiting: {
          reason: "CrashLoopBackOff",
          message: `back-off ${Math.round(delay / 1000)}s restarting failed container=${this.container.name} pod=${this.deps.podName}`,
        },
      });
      await this.sleep(delay);
      if (this.stopping) return exitCode;
      this.restartCount++;
    }
  }

  /** The CRI log file of a run (0 = first start); `<file>.1` holds its rotated older part. */
  logPath(run: number): string {
    return path.join(this.deps.logDir, this.container.name, `${run}.log`);
  }

  /** True while the current run's log may still grow (its process runs or its pipes drain). */
  get logLive(): boolean {
    return this.proc !== undefined;
  }

  /** SIGTERM, SIGKILL after graceMs; cancels a pending restart. Resolves when the process is gone. */
  async stop(graceMs: number): Promise<void> {
    this.stopping = true;
    this.wake?.();
    if (this.proc) await terminate(this.proc, graceMs);
  }

  private async runOnce(spec: RunSpec): Promise<number> {
    mkdirSync(path.join(this.deps.logDir, this.container.name), { recursive: true });
    this.logFile = this.logPath(this.restartCount);
    const proc = startProcess(spec.argv, {
      cwd: spec.cwd,
      env: spec.env,
      logFile: this.logFile,
      limits: this.deps.logLimits,
    });
    this.proc = proc;
    const gen = ++this.generation;
    const startedAt = rfc3339();
    this.started = !this.container.startupProbe || this.deps.init;
    this.ready = false;
    this.setState({ running: { startedAt: startedAt as never } });
    this.deps.logger.info(
      { container: this.container.name, pid: proc.child.pid, argv: spec.argv },
      "container started",
    );
    if (!this.deps.init)
      this.startProbes(gen, {
        podIP: this.deps.podIP(),
        container: this.container,
        env: spec.env,
        cwd: spec.cwd,
      });
    const exit = await proc.exited;
    killGroup(proc.child);
    // Every line is in the log before the container shows as terminated: a follower stops there.
    await drainLogs(proc);
    this.generation++;
    this.proc = undefined;
    this.ready = false;
    const failed = exit.exitCode !== 0;
    const message = exit.startError
      ? exit.startError
      : failed && this.container.terminationMessagePolicy === "FallbackToLogsOnError"
        ? tail(this.logFile)
        : undefined;
    this.setState({
      terminated: {
        exitCode: exit.exitCode,
        ...(exit.signal ? { signal: exit.exitCode - 128 } : {}),
        reason: exit.startError ? "StartError" : failed ? "Error" : "Completed",
        ...(message !== undefined ? { message } : {}),
        startedAt: startedAt as never,
        finishedAt: rfc3339() as never,
        containerID: `procnode://${proc.child.pid ?? 0}`,
      },
    });
    this.deps.logger.info(
      {
        container: this.container.name,
        exitCode: exit.exitCode,
        signal: exit.signal,
        startError: exit.startError,
      },
      "container exited",
    );
    return exit.exitCode;
  }

  private shouldRestart(exitCode: number): boolean {
    const policy = this.deps.restartPolicy;
    if (this.deps.init || policy === "OnFailure") return exitCode !== 0 && policy !== "Never";
    return policy === "Always";
  }

  private startProbes(gen: number, target: ProbeTarget): void {
    const c = this.container;
    if (c.startupProbe) void this.probeLoop("startup", c.startupProbe, gen, target);
    if (c.livenessProbe) void this.probeLoop("liveness", c.livenessProbe, gen, target);
    if (c.readinessProbe) void this.probeLoop("readiness", c.readinessProbe, gen, target);
    else if (this.started) {
      this.ready = true;
      this.deps.onChange();
    }
  }

  private async probeLoop(
    kind: "startup" | "liveness" | "readiness",
    probe: V1Probe,
    gen: number,
    target: ProbeTarget,
  ): Promise<void> {
    const live = () => this.generation === gen && !this.stopping;
    const period = (probe.periodSeconds ?? 10) * 1000;
    await delay((probe.initialDelaySeconds ?? 0) * 1000);
    let successes = 0;
    let failures = 0;
    let everReady = false;
    while (live()) {
      if (kind !== "startup" && !this.started) {
        await delay(100);
        continue;
      }
      const r = await probeOnce(probe, target);
      if (!live()) return;
      if (r.ok) {
        successes++;
        failures = 0;
      } else {
        failures++;
        successes = 0;
      }
      const threshold = probe.failureThreshold ?? 3;
      if (kind === "startup") {
        if (r.ok) {
          this.started = true;
          if (!this.container.readinessProbe) this.ready = true;
          this.deps.onChange();
          return;
        }
        if (failures >= threshold) return this.killForRestart(`Startup probe failed: ${r.message}`);
      } else if (kind === "liveness") {
        if (failures >= threshold)
          return this.killForRestart(`Liveness probe failed: ${r.message}`);
      } else if (r.ok && !this.ready && successes >= (probe.successThreshold ?? 1)) {
        everReady = true;
        this.ready = true;
        this.deps.onChange();
      } else if (!r.ok && this.ready && failures >= threshold) {
        this.ready = false;
        this.deps.onChange();
      }
      // Until the first success a readiness failure changes nothing, so probe fast (≤ 0.5 s) to
      // report Ready as soon as it is, instead of a whole period late.
      await delay(kind === "readiness" && !everReady ? Math.min(period, 500) : period);
    }
  }

  private killForRestart(why: string): void {
    this.deps.logger.warn({ container: this.container.name, why }, "killing container");
    if (this.proc) void terminate(this.proc, this.deps.graceMs());
  }

  private lastExit(): number {
    return this.state.terminated?.exitCode ?? this.lastState.terminated?.exitCode ?? 0;
  }

  private setState(s: V1ContainerState): void {
    this.state = s;
    this.deps.onChange();
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const t = setTimeout(done, ms);
      function done() {
        clearTimeout(t);
        resolve();
      }
      this.wake = done;
    });
  }
}

// Unref: a probe waiting out its period must not keep a stopping agent alive.
const delay = (ms: number) => new Promise<void>((r) => setTimeout(r, ms).unref());
