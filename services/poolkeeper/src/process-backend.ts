import { randomBytes } from "node:crypto";
import path from "node:path";
import type { Readable } from "node:stream";
import { FizzError, RUNTIME_NAMES, runtimeOfImage, type Environment } from "@fizz/events";
import type { Backend, BackendInstance, ExitInfo, OutputStream, SpawnOptions } from "./backend";
import { waitReady } from "./health";
import { freePort, type Logger } from "@fizz/kit";
import { makeInstanceDir, UidPool } from "./isolation";
import { InstanceStarter } from "./instance-start";
import { trackChild, type ChildTracking } from "./instance-exit";
import { sweepLeftovers } from "./leftovers";
import { prepareHost, type NodeBuild, type PreparedHost } from "./host-prepare";
import { describeExit, signalGroup, type Child } from "./process-child";
import type { ProcessBackendOptions } from "./process-backend-options";
import {
  announcesReadiness,
  instanceEnv,
  instanceStdio,
  READY_FD,
  StartPriority,
} from "./instance-launch";
import {
  launchProblem,
  runtimeLaunch,
  type Interpreters,
  type RuntimeLaunch,
} from "./runtime-commands";

export type { ProcessBackendOptions } from "./process-backend-options";

/**
 * How long a pool refill of an announcing runtime has before /healthz polling starts anyway: it
 * announces after its warm-up, which at a low priority on a busy machine takes longer than the
 * default grace, and polling would hand it out mid-rehearsal. Nobody waits for a refill.
 */
const REFILL_ANNOUNCE_GRACE_MS = 3_000;

/**
 * Instances as child processes on 127.0.0.1, each with its own port and working directory.
 * Each child leads its own process group, so a kill reaches anything the function started, and a
 * Ctrl-C in the terminal reaches only the poolkeeper, which then stops its instances in order.
 * stdin stays an open pipe: when the poolkeeper dies, even by SIGKILL, the runtime sees EOF and
 * exits (FIZZ_PARENT_STDIN=1), so no instance outlives it; setpriv's parent-death signal makes
 * sure of it even for a runtime that ignores its stdin.
 *
 * Containment: an instance gets only the documented variables, its own 0700 directory, a fresh
 * specialize token, and (when the poolkeeper is root) its own uid with no groups, capabilities or
 * way to regain privileges, so it can read neither another instance's files nor the platform's.
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
  private readonly uids: UidPool | undefined;
  private prepared: Promise<PreparedHost> | undefined;
  /** Set once prepared: the Node runtime's one-file build, when there is one. */
  private nodeBuild: NodeBuild | undefined;
  /** Directory removals and uid releases under way; close() waits for them. */
  private readonly cleanups = new Set<Promise<unknown>>();
  private readonly priority = new StartPriority();
  /** child_process.spawn or, for refills, the spawner (instance-start.ts). */
  private readonly starter: InstanceStarter;
  /** What trackChild (instance-exit.ts) works with: these same maps, lists and sets. */
  private readonly tracking: ChildTracking;
  /** Leftover uids held (spawns wait for it: none is handed out before its clean-up). */
  private readonly leftoverUids: Promise<unknown>;
  /** The start-up clean-up of what a dead poolkeeper left (leftovers.ts); tests await it. */
  readonly swept: Promise<void>;

  constructor(private readonly opts: ProcessBackendOptions) {
    this.log = opts.logger.child({ component: "process-backend" });
    const u = opts.isolation.uids;
    this.uids = u ? new UidPool(u.base, u.count, u.lockDir) : undefined;
    const nproc = opts.isolation.nproc;
    if (this.uids && nproc && nproc.limit > 0 && !nproc.prlimit)
      this.log.warn(
        { wanted: nproc.limit },
        "prlimit (util-linux) not found: instances start without their process limit (FIZZ_INSTANCE_NPROC)",
      );
    this.tracking = {
      children: this.children,
      exitListeners: this.exitListeners,
      outputListeners: this.outputListeners,
      outputGate: opts.outputGate,
      cleanups: this.cleanups,
      // The kill pass of each instance's clean-up forked by the spawner while there is one.
      isolation: {
        ...opts.isolation,
        forkPass: (ruid, uid, lock) => this.starter.killPass(ruid, uid, lock),
      },
      uids: this.uids,
      log: this.log,
    };
    // What a dead poolkeeper left (leftovers.ts): the names are read now, before any spawn.
    const sweep = sweepLeftovers({
      instancesDir: path.join(opts.workDir, "instances"),
      buildsDir: opts.buildsDir,
      uids: this.uids && u ? { pool: this.uids, ...u } : undefined,
      isolation: opts.isolation,
      keep: (name) => this.children.has(name),
      log: this.log,
    });
    this.leftoverUids = sweep.held;
    this.swept = sweep.done;
    this.cleanups.add(sweep.done);
    // At once, not at the first spawn: with no pool to fill at start-up, that spawn is an empty
    // pool's first request, which waited for all of it (python's compileall, the node build's
    // check: ~0.3-1 s, the p99 of the empty-pool bench). A failure is thrown by the spawns.
    this.prepare().catch(() => undefined);
    this.starter = new InstanceStarter({
      isolation: opts.isolation,
      useSpawner: this.uids !== undefined && opts.spawner !== false,
      python: opts.python,
      workDir: opts.workDir,
      runtimesDir: opts.runtimesDir,
      // A spawn through the spawner ends failed by then, as one through spawn() times out.
      spawnBoundMs: opts.spawnTimeoutMs,
      log: this.log,
    });
  }

  /** Once, before the first spawn (host-prepare.ts). */
  private async prepare(): Promise<void> {
    this.prepared ??= prepareHost({
      workDir: this.opts.workDir,
      runtimesDir: this.opts.runtimesDir,
      interpreters: this.interpreters,
      otherUids: this.uids !== undefined,
      setpriv: this.opts.isolation.setpriv,
      log: this.log,
    });
    this.nodeBuild = (await this.prepared).nodeBuild;
  }

  private get interpreters(): Interpreters {
    const i = this.opts.interpreters;
    return {
      python: this.opts.python,
      php: i?.php ?? "php",
      ruby: i?.ruby ?? "ruby",
      mono: i?.mono ?? "mono",
    };
  }

  private launch(env: Environment): RuntimeLaunch | undefined {
    const runtime = runtimeOfImage(env.spec.image);
    return runtime && runtimeLaunch(runtime, this.opts.runtimesDir, this.interpreters);
  }

  /**
   * The command that starts the environment's loader, or undefined when there is none. Node's is
   * its one-file build once prepare() made one (the same code as server.mjs and its modules).
   */
  command(env: Environment): string[] | undefined {
    if (env.spec.command) return [...env.spec.command];
    const bundle = runtimeOfImage(env.spec.image) === "node" ? this.nodeBuild?.entry() : undefined;
    if (bundle) return [process.execPath, bundle];
    return this.launch(env)?.argv;
  }

  /**
   * Why this host cannot run the environment, in one line: a host command not allowed, an image
   * that names no runtime, or a runtime whose interpreter or prepared artifact is missing (or not
   * usable by instance uids). Its pool stays empty; every other environment runs.
   */
  unsupported(env: Environment): string | undefined {
    if (env.spec.command && !this.opts.allowEnvCommand)
      return "spec.command runs a host command, which this platform does not allow (FIZZ_ALLOW_ENV_COMMAND=true enables it and is root-equivalent)";
    if (env.spec.command) return undefined;
    const launch = this.launch(env);
    if (!launch)
      return `image "${env.spec.image}" names no local runtime (${RUNTIME_NAMES.map((r) => `env-${r}`).join(", ")}) and the environment has no command`;
    const problem = launchProblem(launch, this.uids !== undefined);
    return problem && `${runtimeOfImage(env.spec.image)} runtime unavailable: ${problem}`;
  }

  /**
   * Resolves once the pool uids a dead poolkeeper left are held (leftovers.ts): builds take uids of
   * the same range through a pool of their own, so none may start before (a build given such a
   * uid would run next to the dead tenant's surviving processes). Never rejects.
   */
  leftoversHeld(): Promise<void> {
    return this.leftoverUids.then(() => undefined);
  }

  async spawn(env: Environment, opts: SpawnOptions = {}): Promise<BackendInstance> {
    if (this.closing) throw new FizzError("UNAVAILABLE", "the process backend is stopping");
    const refused = this.unsupported(env);
    if (refused) throw new FizzError("UNKNOWN_IMAGE", refused, { field: "spec.image" });
    await Promise.all([this.prepare(), this.leftoverUids]);
    const cmd = this.command(env);
    if (cmd === undefined)
      throw new FizzError("UNKNOWN_IMAGE", "no command", { field: "spec.image" });

    const id = `${env.metadata.name}-${randomBytes(4).toString("hex")}`;
    const dir = path.join(this.opts.workDir, "instances", id);
    const specializeToken = randomBytes(32).toString("base64url");
    const uid = this.uids?.take();
    let port: number;
    try {
      [port] = await Promise.all([freePort(), makeInstanceDir(dir, uid)]);
    } catch (err) {
      if (uid !== undefined) this.uids?.release(uid);
      throw err;
    }
    const address = `http://127.0.0.1:${port}`;
    // Our own loaders announce readiness on fd 3, a pipe only this child holds: noticed the
    // moment it is ready, where polling noticed it up to one back-off step later. A host command
    // (spec.command) is not ours and gets no extra descriptor; it is polled.
    const announces = announcesReadiness(runtimeOfImage(env.spec.image), !!env.spec.command);
    const taken = opts.taken === true;
    const childEnv = instanceEnv({
      id,
      dir,
      port,
      specializeToken,
      baseEnv: this.opts.baseEnv,
      announces,
      taken,
    });
    const stdio = instanceStdio(announces);
    const proc = await this.starter.start(cmd, { cwd: dir, env: childEnv, stdio }, uid, taken);
    // A refill starts behind the requests being served (StartPriority); a taken one never does.
    const restorePriority = taken
      ? undefined
      : this.priority.lower(proc, this.opts.refillLowPriorityMs);
    const instance: BackendInstance = {
      id,
      address,
      environment: { namespace: env.metadata.namespace, name: env.metadata.name },
      startedAt: Date.now(),
      specializeToken,
      ...(proc.pid !== undefined ? { pid: proc.pid } : {}),
      ...(uid !== undefined ? { uid } : {}),
      dir,
    };
    const child = trackChild(this.tracking, instance, proc, dir, uid);
    if (this.closing) void this.kill(id, "the process backend is stopping");

    try {
      const grace = taken ? this.opts.announceGraceMs : REFILL_ANNOUNCE_GRACE_MS;
      const how = await waitReady(address, this.opts.agent, {
        timeoutMs: this.opts.spawnTimeoutMs,
        exited: child.exited,
        ...(grace === undefined ? {} : { graceMs: grace }),
        announce: announces
          ? ((proc.stdio[READY_FD] as Readable | null | undefined) ?? undefined)
          : undefined,
      });
      this.log.debug({ instance: id, ready: how, ms: Date.now() - instance.startedAt }, "ready");
      restorePriority?.();
      // A spawner child's restore is the spawner's request: not handed out before it is made.
      await this.priority.written(proc);
    } catch (err) {
      restorePriority?.();
      if (!this.children.has(id))
        throw new FizzError("INSTANCE_FAILED", `${id}: ${describeExit(child)}`);
      void this.kill(id, "did not become healthy");
      throw new FizzError("INSTANCE_FAILED", `${id}: ${(err as Error).message}`, { cause: err });
    }
    if (!this.children.has(id))
      throw new FizzError("INSTANCE_FAILED", `${id}: ${describeExit(child)}`);
    child.reported = true;
    return instance;
  }

  async kill(id: string, reason: string): Promise<boolean> {
    const child = this.children.get(id);
    if (!child) return false;
    child.killReason ??= reason;
    const grace = this.opts.killGraceMs;
    signalGroup(child.proc, grace > 0 ? "SIGTERM" : "SIGKILL");
    const hard =
      grace > 0 ? setTimeout(() => signalGroup(child.proc, "SIGKILL"), grace) : undefined;
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
    await Promise.all([...this.cleanups]);
    // Its children (the node build, compileall, a re-check a spawn began) must not outlive it.
    await this.prepared?.catch(() => undefined);
    await this.nodeBuild?.settled();
    await this.starter.close();
  }
}
