import { spawn as spawnChild } from "node:child_process";
import path from "node:path";
import type { Logger } from "@fizz/kit";
import { instanceNprocLimit, wrapCommand, type IsolationOptions } from "./isolation";
import type { ChildLike } from "./spawner-child";
import { startSpawner, type Spawner } from "./spawner-client";

/** Where and with what an instance's process starts (both ways of starting it). */
export interface ChildSetup {
  cwd: string;
  env: Record<string, string>;
  stdio: Array<"pipe" | "ignore">;
}

/**
 * How the process backend starts an instance's process: `child_process.spawn` through prlimit and
 * setpriv (wrapCommand), or, for a pool refill of an instance with its own uid, through the
 * spawner (spawner-client.ts, runtimes/spawner/fizz_spawner.py). A fork of the ~60-90 MB
 * poolkeeper blocks its event loop ~13 ms per spawn (libuv waits for the child's exec), and
 * prlimit and setpriv are two more execs; the spawner forks itself (small) and sets the same
 * session, process limit, credentials and parent-death signal in the child (0.4 ms of loop, ~10
 * ms of CPU against ~18 per start). Not for a taken start: measured, a Node instance was ready no
 * sooner through it, and four at once finished 50-80 ms later.
 */
export class InstanceStarter {
  /** Undefined without own uids, or when it could not start (then child_process.spawn). */
  private readonly spawner: Promise<Spawner | undefined> | undefined;

  constructor(
    private readonly opts: {
      isolation: IsolationOptions;
      /** The spawner is started only with own uids (root), and unless this is false. */
      useSpawner: boolean;
      python: string;
      workDir: string;
      runtimesDir: string;
      log: Logger;
      /** A refill's spawn through the spawner fails after this (SPAWN_BOUND_MS unless set). */
      spawnBoundMs?: number;
    },
  ) {
    this.spawner = opts.useSpawner
      ? startSpawner({
          python: opts.python,
          dir: path.join(opts.workDir, "spawner"),
          script: path.join(opts.runtimesDir, "spawner", "fizz_spawner.py"),
          log: (line) => opts.log.warn({ spawner: line }, "spawner"),
          ...(opts.spawnBoundMs !== undefined ? { spawnBoundMs: opts.spawnBoundMs } : {}),
        }).catch((err: unknown) => {
          opts.log.warn(
            { err: String(err) },
            "the spawner did not start: refills fork the poolkeeper (child_process.spawn)",
          );
          return undefined;
        })
      : undefined;
  }

  /** Starts `cmd` as `uid`: a refill (`taken` false) through the spawner while there is one. */
  async start(
    cmd: string[],
    how: ChildSetup,
    uid: number | undefined,
    taken: boolean,
  ): Promise<ChildLike> {
    return (
      (!taken && uid !== undefined && (await this.throughSpawner(cmd, how, uid))) ||
      this.direct(cmd, how, uid)
    );
  }

  async close(): Promise<void> {
    await (await this.spawner)?.close();
  }

  /** A uid clean-up's kill pass in a fork of the spawner (uid-cleanup.ts ForkPass). */
  async killPass(ruid: number, uid: number, lock: string): Promise<number | undefined> {
    const sp = await this.spawner;
    return sp?.usable ? sp.killPass(ruid, uid, lock) : undefined;
  }

  /** child_process.spawn, through prlimit and setpriv (wrapCommand). */
  private direct(cmd: string[], how: ChildSetup, uid: number | undefined): ChildLike {
    const { setpriv, nproc } = this.opts.isolation;
    const [file, ...args] = wrapCommand(cmd, uid, setpriv, nproc) as [string, ...string[]];
    return spawnChild(file, args, { ...how, detached: true });
  }

  /**
   * Through the spawner, which sets what prlimit and setpriv would (its own session, the uid's
   * RLIMIT_NPROC, no groups, the uid, no inheritable capabilities, no_new_privs, the parent-death
   * signal): undefined when there is none or it has gone (then child_process.spawn).
   */
  private async throughSpawner(
    cmd: string[],
    how: ChildSetup,
    uid: number,
  ): Promise<ChildLike | undefined> {
    const sp = await this.spawner;
    if (!sp?.usable) return undefined;
    const [file, ...args] = cmd as [string, ...string[]];
    const nproc = instanceNprocLimit(uid, this.opts.isolation.nproc);
    return sp
      .spawn({ file, args, ...how, uid, ...(nproc ? { nproc } : {}) })
      .catch(() => undefined); // SPAWNER_UNAVAILABLE: it went away meanwhile
  }
}
