import type { Environment } from "@fizz/events";
import type { Backend, BackendInstance, ExitInfo, OutputStream } from "../src/backend";

/** An in-memory backend: spawns succeed or fail on the next tick, as told. */
export class FakeBackend implements Backend {
  readonly kind = "process" as const;
  readonly alive = new Map<string, BackendInstance>();
  spawnCalls = 0;
  /** Spawns in flight now, and the most at once since the test last reset it. */
  inflight = 0;
  peakInflight = 0;
  fail = false;
  /** Address every instance gets (a test HTTP server standing in for runtimes). */
  address = "http://127.0.0.1:1";
  readonly killed: Array<{ id: string; reason: string }> = [];
  /** Merged into every instance spawned from now on (a uid and directory, as the process backend's). */
  extra: Partial<BackendInstance> = {};
  private n = 0;
  private readonly exitCbs: Array<(i: BackendInstance, info: ExitInfo) => void> = [];

  unsupported(env: Environment): string | undefined {
    return env.spec.image === "unknown" ? "no runtime for this image" : undefined;
  }

  spawn(env: Environment): Promise<BackendInstance> {
    this.spawnCalls++;
    this.peakInflight = Math.max(this.peakInflight, ++this.inflight);
    const fail = this.fail;
    return new Promise((resolve, reject) =>
      setImmediate(() => {
        this.inflight--;
        if (fail) return reject(new Error("loader crashed at start"));
        const instance: BackendInstance = {
          id: `${env.metadata.name}-${++this.n}`,
          address: this.address,
          specializeToken: `token-${this.n}`,
          environment: { namespace: env.metadata.namespace, name: env.metadata.name },
          startedAt: Date.now(),
          ...this.extra,
        };
        this.alive.set(instance.id, instance);
        resolve(instance);
      }),
    );
  }

  kill(id: string, reason: string): Promise<boolean> {
    const i = this.alive.get(id);
    if (!i) return Promise.resolve(false);
    this.killed.push({ id, reason });
    this.alive.delete(id);
    for (const cb of this.exitCbs) cb(i, { code: null, signal: "SIGTERM", expected: true, reason });
    return Promise.resolve(true);
  }

  /** The instance exits on its own. */
  crash(id: string): void {
    const i = this.alive.get(id);
    if (!i) throw new Error(`no instance ${id}`);
    this.alive.delete(id);
    for (const cb of this.exitCbs)
      cb(i, { code: 1, signal: null, expected: false, reason: "exited with code 1" });
  }

  onExit(cb: (i: BackendInstance, info: ExitInfo) => void): void {
    this.exitCbs.push(cb);
  }

  onOutput(_cb: (i: BackendInstance, s: OutputStream, line: string) => void): void {}

  list(): BackendInstance[] {
    return [...this.alive.values()];
  }

  async close(): Promise<void> {
    for (const id of [...this.alive.keys()]) await this.kill(id, "closing");
  }
}

export function env(
  name: string,
  spec: Partial<Environment["spec"]> = {},
  meta: Partial<Environment["metadata"]> = {},
): Environment {
  return {
    apiVersion: "fizz.dev/v1",
    kind: "Environment",
    metadata: {
      namespace: "default",
      name,
      uid: `uid-${name}`,
      revision: 1,
      labels: {},
      createdAt: "2024-01-01T00:00:00Z",
      updatedAt: "2024-01-01T00:00:00Z",
      ...meta,
    },
    spec: { image: "fizz/env-node", poolSize: 3, ...spec },
  };
}
