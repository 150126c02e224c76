import { EventEmitter } from "node:events";
import { constants } from "node:os";
import type { Socket } from "node:net";
import type { Readable, Writable } from "node:stream";

/** A spawn failure or an unusable spawner: `code` is an errno name, or a SPAWNER_* code. */
export class SpawnerError extends Error {
  constructor(
    readonly code: string,
    message: string,
    /** The step of the child's set-up that failed (setresuid, chdir, exec, ...), if it got that far. */
    readonly syscall?: string,
  ) {
    super(message);
    this.name = "SpawnerError";
  }
}

/**
 * What the process backend uses of a ChildProcess (process-backend.ts, process-child.ts,
 * StartPriority): a ChildProcess is one, and so is a child started by the spawner.
 */
export interface ChildLike {
  readonly pid?: number | undefined;
  readonly stdin: Writable | null;
  readonly stdout: Readable | null;
  readonly stderr: Readable | null;
  readonly stdio: ReadonlyArray<Readable | Writable | null | undefined>;
  readonly exitCode: number | null;
  readonly signalCode: NodeJS.Signals | null;
  kill(signal?: NodeJS.Signals | number): boolean;
  once(event: "exit", listener: (code: number | null, signal: NodeJS.Signals | null) => void): this;
  once(event: "close", listener: () => void): this;
  once(event: "error", listener: (err: Error) => void): this;
}

/**
 * A child started by the spawner, shaped like Node's ChildProcess for the process backend: its
 * streams are Unix-socket connections the spawner handed to the child as its descriptors, and
 * 'exit' comes from the spawner's waitpid. Events are emitted only once it has been handed out
 * (a setImmediate after spawn() resolved), so the caller never misses one.
 */
export class SpawnedChild extends EventEmitter implements ChildLike {
  pid: number | undefined;
  exitCode: number | null = null;
  signalCode: NodeJS.Signals | null = null;
  stdio: Array<Socket | null> = [];
  private handedOut = false;
  private readonly queued: Array<() => void> = [];
  private exited = false;
  private openStreams = 0;
  private closed = false;

  constructor(private readonly signal: (sig: number) => boolean) {
    super();
  }

  get stdin(): Socket | null {
    return this.stdio[0] ?? null;
  }
  get stdout(): Socket | null {
    return this.stdio[1] ?? null;
  }
  get stderr(): Socket | null {
    return this.stdio[2] ?? null;
  }

  /** Signals the child's process group through the spawner, which refuses once it reaped it. */
  kill(sig: NodeJS.Signals | number = "SIGTERM"): boolean {
    if (this.pid === undefined || this.exited) return false;
    const n = typeof sig === "number" ? sig : constants.signals[sig];
    if (n === undefined) throw new SpawnerError("EINVAL", `unknown signal ${String(sig)}`);
    return this.signal(n);
  }

  /** @internal The spawner reported the exec and every descriptor has arrived. */
  attach(pid: number, streams: Array<Socket | null>): void {
    this.pid = pid;
    this.stdio = streams;
    // 'close' follows 'exit' once the output streams are done, as with ChildProcess.
    for (const s of streams.slice(1)) {
      // One the child closed with nothing left to read (its stderr, often) may be gone already.
      if (!s || s.closed) continue;
      this.openStreams++;
      s.once("close", () => {
        this.openStreams--;
        this.maybeClose();
      });
    }
    // EPIPE/ECONNRESET on a child's socket is the child's business, never an uncaught error.
    for (const s of streams) s?.on("error", () => undefined);
  }

  /** @internal */
  fail(err: SpawnerError): void {
    this.deliver(() => {
      this.emit("error", err);
      this.closed = true;
      this.emit("close", null, null);
    });
  }

  /** @internal The spawner reaped it (or died: its children died by their parent-death signal). */
  exit(code: number | null, signal: NodeJS.Signals | null): void {
    if (this.exited) return;
    this.exited = true;
    this.deliver(() => {
      this.exitCode = code;
      this.signalCode = signal;
      this.emit("exit", code, signal);
      // As ChildProcess does: stdin goes, and output nobody reads is drained so 'close' comes.
      this.stdin?.destroy();
      for (const s of this.stdio.slice(1)) if (s && s.readableFlowing !== true) s.resume();
      this.maybeClose();
    });
  }

  /** @internal spawn() has resolved with this child: events may flow from the next turn on. */
  handOut(): void {
    setImmediate(() => {
      this.handedOut = true;
      for (const fn of this.queued.splice(0)) fn();
    });
  }

  private deliver(fn: () => void): void {
    if (this.handedOut) fn();
    else this.queued.push(fn);
  }

  private maybeClose(): void {
    if (this.closed || (this.exitCode === null && this.signalCode === null)) return;
    if (this.openStreams > 0) return;
    this.closed = true;
    this.emit("close", this.exitCode, this.signalCode);
  }
}
