import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { rmSync } from "node:fs";
import net from "node:net";
import { constants } from "node:os";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { autogroupWriters } from "./spawner-autogroup";
import { SpawnedChild, SpawnerError } from "./spawner-child";
import { KillPasses } from "./spawner-passes";
import { listenInOwnSocket } from "./spawner-socket";

export { autogroupThroughSpawner, autogroupWritten } from "./spawner-autogroup";
export { SpawnedChild, SpawnerError, type ChildLike } from "./spawner-child";
export { PASS_BOUND_MS } from "./spawner-passes";

/**
 * The spawner script in the source tree. It lives under runtimes/ (runtimes/spawner/), which every
 * layout of the process backend has at FIZZ_RUNTIMES_DIR (the bundle, the dev image), unlike this
 * source file's directory: the backend passes `<runtimesDir>/spawner/fizz_spawner.py`.
 */
export const SPAWNER_SCRIPT = fileURLToPath(
  new URL("../../../runtimes/spawner/fizz_spawner.py", import.meta.url),
);

export interface SpawnerOptions {
  /** An interpreter every uid may run: Debian's /usr/bin/python3 (config's `python` as root). */
  python: string;
  /** A directory for the socket; created 0700, so only root (the spawner) can connect. */
  dir: string;
  script?: string;
  /** The spawner's own complaints (stderr lines). */
  log?: (line: string) => void;
  /** How long a spawn may take before it fails (SPAWN_BOUND_MS unless set). */
  spawnBoundMs?: number;
}

/** One child, as child_process.spawn(file, args, {cwd, env, stdio, detached: true}) takes it. */
export interface SpawnRequest {
  file: string;
  args: string[];
  /** argv[0]; `file` unless set. */
  argv0?: string;
  cwd: string;
  /** Exactly the child's environment: nothing is added. */
  env: Record<string, string>;
  /** Runs as this uid and gid (same number), no groups, no inheritable capabilities. */
  uid?: number;
  /** RLIMIT_NPROC (soft = hard) of the uid, set before the drop; only with `uid`. */
  nproc?: number;
  /** Descriptor i: "pipe" (a stream to us), or "ignore" (/dev/null for 0-2, closed above). */
  stdio: Array<"pipe" | "ignore">;
}

interface Pending {
  id: number;
  token: string;
  child: SpawnedChild;
  streams: Array<net.Socket | null>;
  missing: number;
  pid: number | undefined;
  resolve: (c: SpawnedChild) => void;
  /** Fails the spawn once SPAWN_BOUND_MS has passed. */
  bound: NodeJS.Timeout;
}

/** Fixed-size header of every connection: 32 hex characters of token, a space, the fd, "\n". */
const HEADER_BYTES = 35;
/** A connection that has not named its spawn by then is dropped (it holds a descriptor). */
const HEADER_WAIT_MS = 10_000;
/**
 * A spawn not settled by then fails (SPAWNER_FAILED) and its child, if it was forked, is killed
 * through the spawner: one whose stream connection was lost (dropped before its header was read)
 * never settled, and its refill held its uid and a spawn-gate slot for good. A spawn takes ~10 ms;
 * this is the backend's default spawn timeout (FIZZ_SPAWN_TIMEOUT_MS), which the refill would
 * have failed at anyway had the spawn come back.
 */
export const SPAWN_BOUND_MS = 15_000;
/**
 * The client of runtimes/spawner/fizz_spawner.py: a small root process that forks, drops privileges and
 * execs instances, so the poolkeeper's event loop never waits for a fork of itself. `usable`
 * turns false for good once the spawner is gone; its children were killed by their parent-death
 * signal and are reported exited (SIGKILL), and spawn() rejects with SPAWNER_UNAVAILABLE, so the
 * caller can fall back to child_process.spawn.
 */
export class Spawner {
  private seq = 0;
  private readonly byToken = new Map<string, Pending>();
  private readonly byId = new Map<number, Pending>();
  private readonly live = new Map<number, SpawnedChild>();
  /** Per spawn id, the nice requests not answered yet, in the order sent (the spawner's). */
  private readonly niceAnswers = new Map<number, Array<(ok: boolean) => void>>();
  /** Kill passes sent and not answered yet (killPass). */
  private readonly passes = new KillPasses();
  private gone = false;
  private readonly exited: Promise<void>;

  private constructor(
    private readonly proc: ChildProcess,
    private readonly server: net.Server,
    private readonly sockPath: string,
    private readonly boundMs: number,
  ) {
    this.exited = new Promise((r) => proc.once("exit", () => r()));
    // EPIPE once it is gone: its stdout's end (below) reports that, after its last lines.
    proc.stdin?.on("error", () => undefined);
    server.on("connection", (s) => this.accept(s));
  }

  /** Starts the spawner and resolves once it is ready to spawn. */
  static async start(opts: SpawnerOptions): Promise<Spawner> {
    const { server, sockPath } = await listenInOwnSocket(opts.dir);
    // -I -S: no PYTHON* variables, user site or site hooks; and none of the poolkeeper's
    // environment (its credentials): the children get only what each request names.
    const script = opts.script ?? SPAWNER_SCRIPT;
    const proc = spawn(opts.python, ["-I", "-S", script, sockPath, String(process.pid)], {
      stdio: ["pipe", "pipe", "pipe"],
      env: { PATH: "/usr/bin:/bin", LANG: "C.UTF-8" },
    });
    const log = opts.log ?? ((line: string) => process.stderr.write(`${line}\n`));
    createInterface({ input: proc.stderr }).on("line", log);
    const lines = createInterface({ input: proc.stdout });
    const hello = new Promise<void>((resolve, reject) => {
      lines.once("line", (l) => (l.startsWith('{"ev":"hello"') ? resolve() : reject(new Error(l))));
      proc.once("error", reject);
      proc.once("exit", (code, sig) =>
        reject(new Error(`exited before it was ready (${sig ?? `code ${code}`})`)),
      );
    });
    try {
      await hello;
    } catch (err) {
      proc.kill("SIGKILL");
      server.close();
      throw new SpawnerError(
        "SPAWNER_FAILED",
        `the spawner did not start: ${(err as Error).message}`,
      );
    }
    const spawner = new Spawner(proc, server, sockPath, opts.spawnBoundMs ?? SPAWN_BOUND_MS);
    lines.on("line", (l) => spawner.onLine(l));
    // Not on 'exit': exits it reported just before it died may still be unread.
    lines.once("close", () => spawner.lost());
    return spawner;
  }

  /** False once the spawner is gone or closed: spawn through child_process instead. */
  get usable(): boolean {
    return !this.gone;
  }

  get pid(): number | undefined {
    return this.proc.pid;
  }

  /** Where the spawner connects the children's descriptors to (tests). */
  get socketPath(): string {
    return this.sockPath;
  }

  /**
   * Resolves once the child has exec'd and all its "pipe" descriptors are connected, with its pid
   * set. A spawn that failed (exec, setresuid, chdir...) resolves too, with no pid, and emits
   * 'error' (code: the errno name, syscall: the failed step) and then 'close', as ChildProcess
   * does; nothing of the command ran. Rejects only when the spawner is unusable.
   */
  spawn(req: SpawnRequest): Promise<SpawnedChild> {
    if (this.gone) return Promise.reject(unavailable());
    if (req.stdio.length < 3 || req.stdio.length > 10)
      throw new SpawnerError("EINVAL", "stdio must have 3 to 10 entries");
    const id = ++this.seq;
    const token = randomBytes(16).toString("hex");
    const child = new SpawnedChild((sig) => this.send({ op: "kill", id, signal: sig }));
    let lastNice: Promise<boolean> = Promise.resolve(true);
    autogroupWriters.set(child, {
      write: (nice) => {
        const answer = this.nice(id, nice);
        if (answer) lastNice = answer;
        return answer !== false;
      },
      // The answers come in the order sent: the last one's is after all of them.
      written: () => lastNice.then(() => undefined),
    });
    return new Promise((resolve) => {
      const pending: Pending = {
        id,
        token,
        child,
        streams: req.stdio.map(() => null),
        missing: req.stdio.filter((s) => s === "pipe").length,
        pid: undefined,
        resolve: (c) => {
          clearTimeout(pending.bound);
          resolve(c);
          c.handOut();
        },
        bound: setTimeout(() => this.overdue(pending), this.boundMs),
      };
      this.byToken.set(token, pending);
      this.byId.set(id, pending);
      this.send({
        op: "spawn",
        id,
        token,
        file: req.file,
        args: [req.argv0 ?? req.file, ...req.args],
        env: req.env,
        cwd: req.cwd,
        uid: req.uid ?? null,
        nproc: req.uid !== undefined ? (req.nproc ?? null) : null,
        stdio: req.stdio,
      });
    });
  }

  /** A uid clean-up's kill pass (fizzspawn/killpass.py) in a fork of the spawner: KillPasses.ask. */
  killPass(ruid: number, uid: number, lock: string): Promise<number | undefined> {
    return this.passes.ask(++this.seq, { ruid, uid, lock }, (msg) => this.send(msg));
  }

  /** Stops the spawner (stdin EOF); its children die by their parent-death signal. */
  async close(): Promise<void> {
    this.proc.stdin?.end();
    await this.exited;
    await new Promise<void>((r) => this.server.close(() => r()));
    rmSync(this.sockPath, { force: true });
  }

  private send(msg: object): boolean {
    if (this.gone || !this.proc.stdin?.writable) return false;
    this.proc.stdin.write(`${JSON.stringify(msg)}\n`);
    return true;
  }

  /**
   * Sends a nice request: false if it could not be sent, else its answer, true once the write is
   * made; false if the spawner refused it (reaped) or failed, is gone, or has not answered within
   * the spawn bound (a stopped spawner must not hold a refill for good).
   */
  private nice(id: number, nice: number): Promise<boolean> | false {
    if (!Number.isInteger(nice) || nice < -20 || nice > 19)
      throw new SpawnerError("EINVAL", `nice must be an integer from -20 to 19, not ${nice}`);
    if (!this.send({ op: "nice", id, nice })) return false;
    return new Promise((resolve) => {
      const timer = setTimeout(() => resolve(false), this.boundMs);
      timer.unref();
      const answered = (ok: boolean) => {
        clearTimeout(timer);
        resolve(ok);
      };
      const waiting = this.niceAnswers.get(id);
      if (waiting) waiting.push(answered);
      else this.niceAnswers.set(id, [answered]);
    });
  }

  private onLine(line: string): void {
    let m: { ev?: string; id?: number; pid?: number; code?: unknown; signal?: unknown } & Record<
      string,
      unknown
    >;
    try {
      m = JSON.parse(line) as typeof m;
    } catch {
      return;
    }
    const id = m.id ?? -1;
    if (m.ev === "spawned") {
      const p = this.byId.get(id);
      if (!p) return;
      p.pid = m.pid;
      this.live.set(id, p.child);
      this.settle(p);
    } else if (m.ev === "error") {
      const p = this.byId.get(id);
      if (!p) return;
      this.forget(p);
      for (const s of p.streams) s?.destroy();
      const why = `${String(m.stage)}: ${String(m.message)}`;
      p.child.fail(
        new SpawnerError(typeof m.code === "string" ? m.code : "EIO", why, String(m.stage)),
      );
      p.resolve(p.child);
    } else if (m.ev === "niced") {
      const waiting = this.niceAnswers.get(id);
      const answered = waiting?.shift();
      if (waiting?.length === 0) this.niceAnswers.delete(id);
      answered?.(m.ok === true);
    } else if (m.ev === "passed") {
      this.passes.answered(id, m.code);
    } else if (m.ev === "exit") {
      const child = this.live.get(id);
      if (!child) return;
      this.live.delete(id);
      child.exit(
        typeof m.code === "number" ? m.code : null,
        typeof m.signal === "string" ? (m.signal as NodeJS.Signals) : null,
      );
    }
  }

  /**
   * The spawn took longer than its bound: it fails, and its child, if the spawner forked it (a
   * kill always follows the spawn on its stdin), is killed with its group; the spawner refuses if
   * it was reaped already. Late reports and connections for it are dropped (unknown id, token).
   */
  private overdue(p: Pending): void {
    if (!this.byId.has(p.id)) return;
    this.forget(p);
    this.live.delete(p.id);
    for (const s of p.streams) s?.destroy();
    this.send({ op: "kill", id: p.id, signal: constants.signals.SIGKILL });
    const missing =
      p.pid === undefined
        ? "its exec was not reported"
        : `${p.missing} of its descriptors did not arrive`;
    p.child.fail(
      new SpawnerError(
        "SPAWNER_FAILED",
        `the spawn did not complete within ${this.boundMs} ms (${missing}); its child, if it was started, is killed`,
      ),
    );
    p.resolve(p.child);
  }

  /** Hands the child out once both its exec and all of its descriptors are in. */
  private settle(p: Pending): void {
    if (p.pid === undefined || p.missing > 0) return;
    this.forget(p);
    p.child.attach(p.pid, p.streams);
    p.resolve(p.child);
  }

  private forget(p: Pending): void {
    this.byId.delete(p.id);
    this.byToken.delete(p.token);
  }

  /** A connection from the spawner: its header names the spawn (token) and the descriptor. */
  private accept(s: net.Socket): void {
    s.on("error", () => undefined);
    let named = false;
    // Dropped only if the header really did not come: after the loop was blocked longer than the
    // wait, this timer fires (timers phase) before the poll phase reads a header that arrived in
    // time; setImmediate runs after that poll phase has read it.
    const timer = setTimeout(() => setImmediate(() => named || s.destroy()), HEADER_WAIT_MS);
    timer.unref();
    const onReadable = () => {
      const head = s.read(HEADER_BYTES) as Buffer | null;
      if (head === null) return;
      named = true;
      s.off("readable", onReadable);
      s.off("end", drop);
      clearTimeout(timer);
      const m = /^([0-9a-f]{32}) (\d)\n$/.exec(head.toString("latin1"));
      const p = m ? this.byToken.get(m[1]!) : undefined;
      const fd = Number(m?.[2]);
      // Unknown or used token, or a descriptor it did not ask for or already has: not a child's.
      if (!p || fd >= p.streams.length || p.streams[fd] !== null) return void s.destroy();
      p.streams[fd] = s;
      p.missing--;
      this.settle(p);
    };
    const drop = () => s.destroy();
    s.on("readable", onReadable);
    s.once("end", drop);
  }

  /** @internal The spawner is gone: its children died with it (parent-death signal). */
  lost(): void {
    if (this.gone) return;
    this.gone = true;
    // Not handed out yet: a failed spawn (one that exec'd was killed by its parent-death signal).
    for (const p of [...this.byId.values()]) {
      this.forget(p);
      this.live.delete(p.id);
      for (const s of p.streams) s?.destroy();
      p.child.fail(unavailable());
      p.resolve(p.child);
    }
    for (const child of this.live.values()) child.exit(null, "SIGKILL");
    this.live.clear();
    for (const waiting of this.niceAnswers.values())
      for (const answered of waiting) answered(false);
    this.niceAnswers.clear();
    // Kill passes are not answered here (KillPasses.answered says why).
    this.server.close();
  }
}

function unavailable(): SpawnerError {
  return new SpawnerError("SPAWNER_UNAVAILABLE", "the spawner is gone");
}

/** Starts the spawner: `{ spawn, close, usable }` (see Spawner). */
export function startSpawner(opts: SpawnerOptions): Promise<Spawner> {
  return Spawner.start(opts);
}
