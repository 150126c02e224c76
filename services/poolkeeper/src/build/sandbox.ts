import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { chmod, lchown, lstat, mkdir, readdir } from "node:fs/promises";
import path from "node:path";
import { FizzError } from "@fizz/events";
import type { Logger } from "@fizz/kit";
import {
  INSTANCE_PATH,
  killUid,
  makeInstanceDir,
  traversable,
  UidPool,
  wrapCommand,
  type IsolationOptions,
  type UidKill,
} from "../isolation";
import type { LogTail } from "./log-tail";
import { removeOrLock } from "../remove-or-lock";

export interface SandboxOptions {
  /** Builds get their directories under here (0711: reachable by build uids, not listable). */
  root: string;
  /** The process backend's isolation: the same uid range, lock directory and setpriv. */
  isolation: IsolationOptions;
  /** Between SIGTERM and SIGKILL at the time limit. */
  killGraceMs: number;
  /**
   * PATH, LANG, TZ: what instances get too; never the poolkeeper's environment (but for the Go
   * module proxy settings, GO_PASSTHROUGH, which the runner adds).
   */
  baseEnv: Record<string, string>;
  /** What build uids must reach (the node and python binaries, npm). */
  reach: string[];
  logger: Logger;
  /** Before each later removal of a directory whose first failed (RETRY_DELAYS_MS: tests). */
  removalRetryMs?: readonly number[];
}

export interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  timedOut: boolean;
  aborted: boolean;
  spawnError?: string;
}

/** After the child exits, how long its pipes may stay open (a grandchild holding them). */
const CLOSE_WAIT_MS = 200;

/**
 * Runs untrusted build code the way the process backend runs instances: its own uid from the same
 * pool (so no build shares a uid with a live instance or another build), setpriv without groups,
 * capabilities or a way back to privilege, a 0700 directory of its own, only the documented
 * variables, its own process group, killed whole at the time limit, and a process limit for its
 * uid (FIZZ_BUILD_NPROC), so a fork bomb in an install script gets EAGAIN.
 */
export class BuildSandbox {
  private readonly uids: UidPool | undefined;
  private prepared: Promise<void> | undefined;

  constructor(private readonly opts: SandboxOptions) {
    const u = opts.isolation.uids;
    // The lock files (owner pid) keep a uid from being handed out twice by this pool and the
    // process backend's own, which claim from the same directory.
    this.uids = u ? new UidPool(u.base, u.count, u.lockDir) : undefined;
    const nproc = opts.isolation.buildNproc;
    if (this.uids && nproc && nproc.limit > 0 && !nproc.prlimit)
      opts.logger.warn(
        { wanted: nproc.limit },
        "prlimit (util-linux) not found: builds run without their process limit (FIZZ_BUILD_NPROC)",
      );
  }

  /** Whether builds run as uids of their own (the poolkeeper is root). */
  get isolated(): boolean {
    return this.uids !== undefined;
  }

  private prepare(): Promise<void> {
    this.prepared ??= (async () => {
      await mkdir(this.opts.root, { recursive: true, mode: 0o711 });
      await chmod(this.opts.root, 0o711);
      if (!this.uids) return;
      const changed = (
        await Promise.all(
          [path.dirname(this.opts.root), ...this.opts.reach]
            .filter((p) => path.isAbsolute(p))
            .map((p) => traversable(p).catch(() => [] as string[])),
        )
      ).flat();
      if (changed.length > 0)
        this.opts.logger.warn(
          { dirs: changed },
          "gave other users traverse (not read) permission on these directories, so build uids can reach their build directories and tools",
        );
    })();
    return this.prepared;
  }

  /** A fresh directory and uid for one build; `dispose()` gives both back. */
  async open(name: string): Promise<BuildWorkspace> {
    await this.prepare();
    const uid = this.uids?.take();
    const dir = path.join(this.opts.root, `${name}-${randomBytes(4).toString("hex")}`);
    try {
      await makeInstanceDir(dir, uid);
    } catch (err) {
      if (uid !== undefined) this.uids?.release(uid);
      throw err;
    }
    return new BuildWorkspace(
      dir,
      uid,
      this.opts,
      (u, kill) => this.uids?.giveBack(u, kill) ?? true,
    );
  }
}

export class BuildWorkspace {
  readonly srcDir: string;
  readonly outDir: string;
  private disposed: Promise<void> | undefined;

  constructor(
    readonly dir: string,
    readonly uid: number | undefined,
    private readonly opts: SandboxOptions,
    /** Gives the uid back, or quarantines it when `kill` left processes alive (false). */
    private readonly release: (uid: number, kill: UidKill) => boolean,
  ) {
    this.srcDir = path.join(dir, "src");
    this.outDir = path.join(dir, "out");
  }

  /** Hands everything under the directory (extracted as root) to the build's uid. */
  async handOver(): Promise<void> {
    await mkdir(this.outDir, { mode: 0o755 });
    if (this.uid !== undefined) await chownTree(this.dir, this.uid);
  }

  /** The only variables a build sees: never the poolkeeper's own. */
  env(
    builderEnv: Record<string, string> | undefined,
    step?: Record<string, string>,
    pathDirs: string[] = [],
  ) {
    const nodeDir = path.dirname(process.execPath);
    const base = INSTANCE_PATH.split(":");
    const extra = [...pathDirs, nodeDir].filter(
      (d, i, all) => !base.includes(d) && all.indexOf(d) === i,
    );
    const pathVar = [...extra, ...base].join(":");
    return {
      ...this.opts.baseEnv,
      ...builderEnv,
      PATH: pathVar,
      HOME: this.dir,
      TMPDIR: this.dir,
      npm_config_cache: path.join(this.dir, ".npm"),
      npm_config_update_notifier: "false",
      npm_config_fund: "false",
      npm_config_audit: "false",
      ...step,
    };
  }

  /**
   * Runs one command in `cwd` as the build's uid, its output into `log`, until it exits, the
   * deadline passes (SIGTERM to its process group, SIGKILL after the grace) or `signal` aborts.
   */
  run(
    argv: string[],
    o: {
      cwd: string;
      env: Record<string, string>;
      deadline: number;
      log: LogTail;
      signal: AbortSignal;
    },
  ): Promise<RunResult> {
    // With the build's process limit (FIZZ_BUILD_NPROC), only where the uid is the build's own.
    const { setpriv, buildNproc } = this.opts.isolation;
    const [file, ...args] = wrapCommand(argv, this.uid, setpriv, buildNproc) as [
      string,
      ...string[],
    ];
    return new Promise((resolve) => {
      const result: RunResult = { code: null, signal: null, timedOut: false, aborted: false };
      const proc = spawn(file, args, {
        cwd: o.cwd,
        env: o.env,
        stdio: ["ignore", "pipe", "pipe"],
        detached: true,
      });
      const group = (sig: NodeJS.Signals) => {
        if (proc.pid === undefined) return;
        try {
          process.kill(-proc.pid, sig);
        } catch {
          // the group is gone
        }
      };
      let hard: NodeJS.Timeout | undefined;
      const stop = (why: "timedOut" | "aborted") => {
        if (result.timedOut || result.aborted) return;
        result[why] = true;
        group("SIGTERM");
        hard = setTimeout(() => group("SIGKILL"), this.opts.killGraceMs);
      };
      const timer = setTimeout(() => stop("timedOut"), Math.max(0, o.deadline - Date.now()));
      const onAbort = () => stop("aborted");
      o.signal.addEventListener("abort", onAbort, { once: true });
      if (o.signal.aborted) onAbort();
      for (const s of [proc.stdout, proc.stderr])
        s?.setEncoding("utf8").on("data", (d: string) => o.log.write(d));
      let done = false;
      const finish = () => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        clearTimeout(hard);
        o.signal.removeEventListener("abort", onAbort);
        // Whatever the step left running in its group goes with it.
        group("SIGKILL");
        resolve(result);
      };
      proc.once("error", (e) => {
        result.spawnError = e.message;
        if (proc.pid === undefined) finish();
      });
      proc.once("exit", (code, sig) => {
        result.code = code;
        result.signal = sig;
        setTimeout(finish, CLOSE_WAIT_MS).unref();
      });
      proc.once("close", finish);
    });
  }

  /**
   * Ends everything still running as the build's uid (a daemon that left the process group). Runs
   * before the output is read: with nothing of the build alive, nothing can swap a file for a link
   * while the poolkeeper (root) packs it.
   */
  async quiesce(): Promise<void> {
    if (this.uid === undefined) return;
    const kill = await killUid(this.uid, this.opts.isolation, this.opts.isolation.killBound);
    if (kill.left > 0)
      throw new FizzError(
        "INTERNAL",
        kill.unremoved
          ? `the build's uid ${this.uid} left what could not be removed: ${kill.unremoved.slice(0, 3).join("; ")}`
          : `${kill.left} processes of the build's uid ${this.uid} survived every kill`,
      );
  }

  /**
   * The deployment directory: out/ when the build put anything there, else src/. Either must still
   * be a real directory (the build owns its workspace and could have swapped one for a link to `/`).
   */
  async deploymentDir(): Promise<string> {
    for (const d of [this.outDir, this.srcDir]) {
      const st = await lstat(d).catch(() => undefined);
      if (!st?.isDirectory())
        throw new Error(`${path.basename(d)}/ is no longer a directory after the build`);
    }
    const out = await readdir(this.outDir);
    const dir = out.length > 0 ? this.outDir : this.srcDir;
    if (this.uid !== undefined) await assertOwnedBy(dir, this.uid);
    return dir;
  }

  /**
   * Kills what is left, removes the directory (or locks it away for a later removal: removeOrLock),
   * then gives the uid back, in that order: nothing of the uid runs by the lock, so none can enter
   * the tree after it nor be alive once the uid is handed out again. Throws only when the
   * directory is neither removed nor locked whole: the uid goes back once a later removal ends.
   */
  dispose(): Promise<void> {
    this.disposed ??= (async () => {
      const kill =
        this.uid === undefined
          ? { killed: 0, left: 0 }
          : await killUid(this.uid, this.opts.isolation, this.opts.isolation.killBound);
      // Not fs.rm, which walks by path: see removeTreeNoFollow (a build's uid may have let
      // another uid into its tree, still running now, that swaps directories for links).
      const giveBack = () => {
        if (this.uid === undefined || this.release(this.uid, kill)) return;
        this.opts.logger.error(
          { uid: this.uid, left: kill.left, unremoved: kill.unremoved },
          "what a build uid left (processes, or files: unremoved) could not all be removed; the uid is quarantined",
        );
      };
      const out = await removeOrLock(this.dir, {
        log: this.opts.logger,
        what: "a build",
        retryDelaysMs: this.opts.removalRetryMs,
        late: giveBack,
      });
      if (!out)
        throw new FizzError(
          "INTERNAL",
          `the build directory ${this.dir} could not be removed; its uid is reserved until it is`,
        );
      giveBack();
    })();
    return this.disposed;
  }
}

async function chownTree(dir: string, uid: number): Promise<void> {
  await lchown(dir, uid, uid);
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) await chownTree(p, uid);
    else await lchown(p, uid, uid);
  }
}

/**
 * Every file of the output belongs to the build's uid: a hard link to a file of someone else's
 * (root's) would otherwise be read by the packing poolkeeper and shipped in the deployment.
 */
async function assertOwnedBy(dir: string, uid: number): Promise<void> {
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    const st = await lstat(p);
    if (st.uid !== uid)
      throw new Error(`${path.relative(path.dirname(dir), p)} was not written by the build`);
    if (st.isDirectory()) await assertOwnedBy(p, uid);
  }
}
