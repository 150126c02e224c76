import { spawn as spawnChild, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdir, rm } from "node:fs/promises";
import path from "node:path";
import { FizzError, runtimeOfImage, type Environment } from "@fizz/events";
import type { Logger } from "@fizz/kit";
import type { Dispatcher } from "undici";
import type { Backend, BackendInstance, ExitInfo, OutputStream } from "./backend";
import { LineSplitter } from "./lines";
import { waitHealthy } from "./health";
import { freePort } from "./ports";

export interface ProcessBackendOptions {
  workDir: string;
  runtimesDir: string;
  python: string;
  spawnTimeoutMs: number;
  killGraceMs: number;
  /** Inherited by every instance (PATH, HOME, ...); the per-instance variables are added on top. */
  baseEnv: Record<string, string>;
  /** Shared keep-alive agent: the health probe's connection is reused by the specialize POST. */
  agent: Dispatcher;
  logger: Logger;
}

interface Child {
  instance: BackendInstance;
  proc: ChildProcess;
  dir: string;
  /** spawn() resolved: from then on the exit is reported through onExit. */
  reported: boolean;
  killReason: string | undefined;
  exitCode: number | null;
  exitSignal: string | null;
  spawnError: string | undefined;
  stderrTail: string[];
  exited: Promise<void>;
  finalize: () => void;
}

const STDERR_TAIL_LINES = 5;
/** After 'exit', how long to wait for the pipes to close (a grandchild may hold them open). */
const CLOSE_WAIT_MS = 200;

/**
 * Instances as child processes on 127.0.0.1, each with its own port and working directory.
 * Each child leads its own process group, so a kill reaches anything the function started, and a
 * Ctrl-C in the terminal reaches only the poolkeeper, which then stops its instances in order.
 * stdin stays an open pipe: when the poolkeeper dies, even by SIGKILL, the runtime sees EOF and
 * exits (FIZZ_PARENT_STDIN=1), so no instance outlives it.
 */
export class ProcessBackend implements Backend {
  readonly kind = "process" as const;
  private readonly children = new Map<string, Child>();
  private readonly exitListeners: Array<(i: BackendInstance, info: ExitInfo) => void> = [];
  private readonly outputListeners: Array<
    (i: BackendInstance, s: OutputStream, line: string) => void
  > = [];
  private closing = false;
  private readonly log: Logger;

  constructor(private readonly opts: ProcessBackendOptions) {
    this.log = opts.logger.child({ component: "process-backend" });
  }

  /** The command that starts the environment's loader, or undefined when there is none. */
  command(env: Environment): string[] | undefined {
    if (env.spec.command) return [...env.spec.command];
    switch (runtimeOfImage(env.spec.image)) {
      case "node":
        return [process.execPath, path.join(this.opts.runtimesDir, "node", "server.mjs")];
      case "python":
        return [this.opts.python, path.join(this.opts.runtimesDir, "python", "server.py")];
      default:
        return undefined;
    }
  }

  unsupported(env: Environment): string | undefined {
    if (this.command(env)) return undefined;
    return `image "${env.spec.image}" names no local runtime (env-node, env-python) and the environment has no command`;
  }

  async spawn(env: Environment): Promise<BackendInstance> {
    if (this.closing) throw new FizzError("UNAVAILABLE", "the process backend is stopping");
    const cmd = this.command(env);
    const [file, ...args] = cmd ?? [];
    if (file === undefined)
      throw new FizzError("UNKNOWN_IMAGE", this.unsupported(env) ?? "no command", {
        field: "spec.image",
      });

    const id = `${env.metadata.name}-${randomBytes(4).toString("hex")}`;
    const dir = path.join(this.opts.workDir, "instances", id);
    const [port] = await Promise.all([freePort(), mkdir(dir, { recursive: true })]);
    const address = `http://127.0.0.1:${port}`;
    const proc = spawnChild(file, args, {
      env: {
        // A piped Python stdout is block-buffered: the function's prints would reach the logs late.
        PYTHONUNBUFFERED: "1",
        ...this.opts.baseEnv,
        PORT: String(port),
        HOST: "127.0.0.1",
        FIZZ_INSTANCE_ID: id,
        FIZZ_WORKDIR: dir,
        FIZZ_PARENT_STDIN: "1",
      },
      stdio: ["pipe", "pipe", "pipe"],
      detached: true,
    });
    const instance: BackendInstance = {
      id,
      address,
      environment: { namespace: env.metadata.namespace, name: env.metadata.name },
      startedAt: Date.now(),
      ...(proc.pid !== undefined ? { pid: proc.pid } : {}),
    };
    const child = this.track(instance, proc, dir);
    if (this.closing) void this.kill(id, "the process backend is stopping");

    try {
      await waitHealthy(address, this.opts.agent, {
        timeoutMs: this.opts.spawnTimeoutMs,
        exited: child.exited,
      });
    } catch (err) {
      if (!this.children.has(id))
        throw new FizzError("INSTANCE_FAILED", `${id}: ${this.describeExit(child)}`);
      void this.kill(id, "did not become healthy");
      throw new FizzError("INSTANCE_FAILED", `${id}: ${(err as Error).message}`, { cause: err });
    }
    if (!this.children.has(id))
      throw new FizzError("INSTANCE_FAILED", `${id}: ${this.describeExit(child)}`);
    child.reported = true;
    return instance;
  }

  async kill(id: string, reason: string): Promise<boolean> {
    const child = this.children.get(id);
    if (!child) return false;
    child.killReason ??= reason;
    const grace = this.opts.killGraceMs;
    this.signal(child, grace > 0 ? "SIGTERM" : "SIGKILL");
    const hard = grace > 0 ? setTimeout(() => this.signal(child, "SIGKILL"), grace) : undefined;
    await child.exited;
    if (hard) clearTimeout(hard);
    return true;
  }

  onExit(cb: (instance: BackendInstance, info: ExitInfo) => void): void {
    this.exitListeners.push(cb);
  }

  onOutput(cb: (instance: BackendInstance, stream: OutputStream, line: string) => void): void {
    this.outputListeners.push(cb);
  }

  list(): BackendInstance[] {
    return [...this.children.values()].filter((c) => c.reported).map((c) => c.instance);
  }

  async close(): Promise<void> {
    this.closing = true;
    await Promise.all([...this.children.keys()].map((id) => this.kill(id, "poolkeeper stopping")));
  }

  private track(instance: BackendInstance, proc: ChildProcess, dir: string): Child {
    let resolveExited!: () => void;
    const exited = new Promise<void>((r) => (resolveExited = r));
    let done = false;
    const child: Child = {
      instance,
      proc,
      dir,
      reported: false,
      killReason: undefined,
      exitCode: null,
      exitSignal: null,
      spawnError: undefined,
      stderrTail: [],
      exited,
      finalize: () => {
        if (done) return;
        done = true;
        this.children.delete(instance.id);
        // Whatever the function left behind in its process group goes with it.
        if (proc.pid !== undefined) {
          try {
            process.kill(-proc.pid, "SIGKILL");
          } catch {
            // ESRCH: the group is already empty.
          }
        }
        void rm(dir, { recursive: true, force: true }).catch((err: unknown) =>
          this.log.warn(
            { instance: instance.id, dir, err: String(err) },
            "could not remove an instance directory",
          ),
        );
        if (child.reported) {
          const info: ExitInfo = {
            code: child.exitCode,
            signal: child.exitSignal,
            expected: child.killReason !== undefined,
            reason: child.killReason ?? this.describeExit(child),
          };
          for (const cb of this.exitListeners) {
            try {
              cb(instance, info);
            } catch (err) {
              this.log.error({ err }, "exit listener failed");
            }
          }
        }
        resolveExited();
      },
    };
    this.children.set(instance.id, child);

    const emit = (stream: OutputStream) => (line: string) => {
      if (stream === "stderr") {
        child.stderrTail.push(line);
        if (child.stderrTail.length > STDERR_TAIL_LINES) child.stderrTail.shift();
      }
      for (const cb of this.outputListeners) cb(instance, stream, line);
    };
    const out = new LineSplitter(emit("stdout"));
    const err = new LineSplitter(emit("stderr"));
    proc.stdout
      ?.setEncoding("utf8")
      .on("data", (s: string) => out.push(s))
      .on("end", () => out.end());
    proc.stderr
      ?.setEncoding("utf8")
      .on("data", (s: string) => err.push(s))
      .on("end", () => err.end());
    // EPIPE when the runtime exits: expected, and must not crash the poolkeeper.
    proc.stdin?.on("error", () => undefined);

    proc.once("error", (e) => {
      child.spawnError = e.message;
      if (proc.pid === undefined) child.finalize();
    });
    proc.once("exit", (code, signal) => {
      child.exitCode = code;
      child.exitSignal = signal;
      setTimeout(child.finalize, CLOSE_WAIT_MS).unref();
    });
    proc.once("close", () => {
      out.end();
      err.end();
      child.finalize();
    });
    return child;
  }

  private signal(child: Child, sig: NodeJS.Signals): void {
    const pid = child.proc.pid;
    if (pid === undefined) return;
    try {
      process.kill(-pid, sig);
    } catch {
      try {
        child.proc.kill(sig);
      } catch {
        // Already gone.
      }
    }
  }

  private describeExit(child: Child): string {
    const how = child.spawnError
      ? `could not start: ${child.spawnError}`
      : child.exitSignal
        ? `killed by ${child.exitSignal}`
        : `exited with code ${child.exitCode ?? "?"}`;
    const last = child.stderrTail.at(-1);
    return last ? `${how}: ${last}` : how;
  }
}
