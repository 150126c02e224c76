import { randomBytes } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { freePort } from "@fizz/testkit";
// The launcher and supervisor `npm start` uses, with its own embedded NATS and Redis: the kills
// below hit exactly what a user runs, data dirs and restart policy included.
import { launchPlatform } from "../../scripts/lib/platform.mjs";
import { workerJs } from "../e2e/functions";

/** What the suite kills, in order: every service, then the bus and the store. */
export const COMPONENTS = [
  "scheduler",
  "poolkeeper",
  "registry",
  "kubewatcher",
  "gateway",
  "nats",
  "redis",
] as const;
export type Component = (typeof COMPONENTS)[number];

export interface FaultPlatform {
  gatewayUrl: string;
  registryUrl: string;
  logs: string[];
  kill(name: Component): number;
  /** The current process id of a component. */
  pid(name: Component): number;
  restarted(name: Component, after: number, timeoutMs?: number): Promise<void>;
  api(method: string, p: string, body?: unknown): Promise<Response>;
  stop(): Promise<void>;
}

export async function startFaultPlatform(env: Record<string, string> = {}): Promise<FaultPlatform> {
  const dataDir = await mkdtemp(path.join(tmpdir(), "fizz-fault-"));
  const logs: string[] = [];
  const ownToken = randomBytes(24).toString("base64url");
  const launched = await launchPlatform({
    dataDir,
    gatewayPort: await freePort(),
    registryPort: await freePort(),
    env: {
      FIZZ_LOG_LEVEL: "warn",
      // Used only if the launcher does not generate credentials itself.
      FIZZ_ADMIN_TOKEN: ownToken,
      // Redelivery after an invoker crash within seconds keeps the stage short (also the default
      // once the invoker ships in-progress acks).
      FIZZ_INVOKER_ACK_WAIT_MS: "5000",
      FIZZ_REPORT_INTERVAL_MS: "500",
      ...env,
    },
    onLog: (name: string, line: string) => {
      logs.push(`${new Date().toISOString()} [${name}] ${line}`);
      if (logs.length > 3000) logs.shift();
    },
  }).catch((err: unknown) => {
    console.error(logs.slice(-40).join("\n"));
    throw err;
  });
  const token = await adminToken(
    launched.registryUrl,
    dataDir,
    launched as unknown as Record<string, unknown>,
    ownToken,
  );
  return {
    gatewayUrl: launched.gatewayUrl,
    registryUrl: launched.registryUrl,
    logs,
    kill: (name) => launched.kill(name),
    pid: (name) => {
      const c = launched.children.find((x: { name: string }) => x.name === name);
      if (!c?.child.pid) throw new Error(`no process for ${name}`);
      return c.child.pid;
    },
    restarted: (name, after, timeoutMs) => launched.restarted(name, after, timeoutMs),
    api: (method, p, body) =>
      fetch(`${launched.registryUrl}${p}`, {
        method,
        headers: { "content-type": "application/json", authorization: `Bearer ${token}` },
        signal: AbortSignal.timeout(10_000),
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      }),
    stop: async () => {
      await launched.stop();
      await rm(dataDir, { recursive: true, force: true });
    },
  };
}

/** The admin token the registry accepts: the launcher's generated one, or ours. */
async function adminToken(
  registryUrl: string,
  dataDir: string,
  launched: Record<string, unknown>,
  own: string,
): Promise<string> {
  const file = path.join(dataDir, "admin-token");
  const candidates = [
    typeof launched.adminToken === "string" ? launched.adminToken : undefined,
    existsSync(file) ? readFileSync(file, "utf8").trim() : undefined,
    own,
  ].filter((t): t is string => t !== undefined);
  for (const t of candidates) {
    const r = await fetch(`${registryUrl}/v1/namespaces/default/environments`, {
      headers: { authorization: `Bearer ${t}` },
    });
    await r.text();
    if (r.ok) return t;
  }
  throw new Error("the registry accepts none of the admin tokens the launcher could have set");
}

export async function ok(res: Promise<Response>, what: string): Promise<unknown> {
  const r = await res;
  const text = await r.text();
  if (!r.ok) throw new Error(`${what}: ${r.status} ${text}`);
  return text ? (JSON.parse(text) as unknown) : undefined;
}

/** Every live process below `pid` (instances and whatever they started). */
export async function descendants(pid: number): Promise<number[]> {
  const parent = new Map<number, number>();
  for (const entry of await readdir("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = await readFile(`/proc/${entry}/stat`, "utf8");
      // Fields after the parenthesised command name: state, ppid, ...
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      parent.set(Number(entry), ppid);
    } catch {
      // processes come and go while we scan
    }
  }
  const out: number[] = [];
  const frontier = [pid];
  while (frontier.length) {
    const p = frontier.pop() as number;
    for (const [child, pp] of parent) {
      if (pp === p) {
        out.push(child);
        frontier.push(child);
      }
    }
  }
  return out;
}

export async function alive(pids: readonly number[]): Promise<number[]> {
  const out: number[] = [];
  for (const pid of pids) {
    try {
      const stat = await readFile(`/proc/${pid}/stat`, "utf8");
      if (!/\) Z /.test(stat)) out.push(pid);
    } catch {
      // gone
    }
  }
  return out;
}

/**
 * A node environment with a warm pool and the warm function the load targets, and a Python warm
 * pool (whose instances a poolkeeper crash used to leave orphaned).
 */
export async function deployWarm(p: FaultPlatform): Promise<void> {
  await ok(
    p.api("POST", "/v1/namespaces/default/environments", {
      name: "python",
      spec: { image: "fizz/env-python", poolSize: 1 },
    }),
    "create environment",
  );
  await ok(
    p.api("POST", "/v1/namespaces/default/environments", {
      name: "node",
      spec: { image: "fizz/env-node", poolSize: 2 },
    }),
    "create environment",
  );
  await ok(
    p.api("POST", "/v1/namespaces/default/functions", {
      name: "warm",
      spec: {
        environment: "node",
        code: { filename: "f.js", content: Buffer.from(workerJs()).toString("base64") },
        concurrency: 50,
        maxInstances: 2,
      },
    }),
    "create function",
  );
  const deadline = Date.now() + 60_000;
  for (;;) {
    const r = await fetch(`${p.gatewayUrl}/function/warm`).catch(() => undefined);
    if (r?.status === 200) {
      await r.text();
      return;
    }
    await r?.text();
    if (Date.now() > deadline) throw new Error("the warm function never answered 200");
    await sleep(100);
  }
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Outcome {
  start: number;
  end: number;
  ok: boolean;
  detail: string;
}

/** Failures within [from, to): count, first start to last end, and a few samples. */
export function errorWindow(outcomes: readonly Outcome[], from: number, to: number) {
  const failed = outcomes.filter((o) => !o.ok && o.start >= from && o.start < to);
  const total = outcomes.filter((o) => o.start >= from && o.start < to).length;
  if (failed.length === 0) return { failed: 0, total, windowMs: 0, samples: [] as string[] };
  const first = Math.min(...failed.map((o) => o.start));
  const last = Math.max(...failed.map((o) => o.end));
  const samples = [...new Set(failed.map((o) => o.detail))].slice(0, 3);
  return { failed: failed.length, total, windowMs: Math.round(last - first), samples };
}

/**
 * Steady traffic through the platform while components die: `clients` warm HTTP loops, one async
 * caller choosing its own call ids, and one registry writer creating small environments. Every
 * outcome is recorded with its times so each kill's error window can be read off afterwards.
 */
export class Load {
  readonly warm: Outcome[] = [];
  readonly async: Outcome[] = [];
  readonly writes: Outcome[] = [];
  /** Call ids the gateway answered 202 for: each must eventually succeed. */
  readonly accepted: string[] = [];
  /** Environments the registry answered 2xx for: each must be there at the end. */
  readonly acknowledged: string[] = [];
  private running = true;
  private readonly loops: Promise<void>[] = [];
  private seq = 0;

  constructor(
    private readonly p: FaultPlatform,
    clients = 4,
  ) {
    for (let i = 0; i < clients; i++) this.loops.push(this.loop(() => this.warmCall(), 0));
    this.loops.push(this.loop(() => this.asyncCall(), 40));
    this.loops.push(this.loop(() => this.write(), 100));
  }

  async stop(): Promise<void> {
    this.running = false;
    await Promise.all(this.loops);
  }

  private async loop(call: () => Promise<void>, pauseMs: number): Promise<void> {
    while (this.running) {
      await call();
      // A failing call returns at once; pausing keeps a dead target from spinning the CPU.
      await sleep(pauseMs || (this.warm.at(-1)?.ok === false ? 20 : 0));
    }
  }

  private async record(list: Outcome[], run: () => Promise<string | undefined>): Promise<void> {
    const start = performance.now();
    let detail: string | undefined;
    try {
      detail = await run();
    } catch (err) {
      detail = err instanceof Error ? `${err.name}: ${err.message}` : String(err);
    }
    list.push({ start, end: performance.now(), ok: detail === undefined, detail: detail ?? "" });
  }

  private warmCall(): Promise<void> {
    return this.record(this.warm, async () => {
      const r = await fetch(`${this.p.gatewayUrl}/function/warm`, {
        signal: AbortSignal.timeout(5000),
      });
      const text = await r.text();
      return r.status === 200 ? undefined : `${r.status} ${text.slice(0, 120)}`;
    });
  }

  private asyncCall(): Promise<void> {
    const id = `fault-${process.pid}-${++this.seq}`;
    return this.record(this.async, async () => {
      const r = await fetch(`${this.p.gatewayUrl}/async-function/warm`, {
        method: "POST",
        headers: { "x-call-id": id, "content-type": "text/plain" },
        body: id,
        signal: AbortSignal.timeout(5000),
      });
      const text = await r.text();
      if (r.status !== 202) return `${r.status} ${text.slice(0, 120)}`;
      this.accepted.push(id);
      return undefined;
    });
  }

  private write(): Promise<void> {
    const name = `w-${++this.seq}`;
    return this.record(this.writes, async () => {
      const r = await this.p.api("POST", "/v1/namespaces/default/environments", {
        name,
        spec: { image: "fizz/env-node", poolSize: 0 },
      });
      const text = await r.text();
      if (r.status !== 201) return `${r.status} ${text.slice(0, 120)}`;
      this.acknowledged.push(name);
      return undefined;
    });
  }
}

export interface KillResult {
  component: Component;
  /** From the kill to the restarted process being ready. */
  restartMs: number;
  warm: ReturnType<typeof errorWindow>;
  async: ReturnType<typeof errorWindow>;
  writes: ReturnType<typeof errorWindow>;
}

/**
 * kill -9 one component under the running load, wait for the supervisor to bring it back, then
 * for warm traffic to succeed again and `settleMs` more, and read off each stream's error window.
 */
export async function killAndMeasure(
  p: FaultPlatform,
  load: Load,
  component: Component,
  settleMs = 1500,
): Promise<KillResult> {
  const from = performance.now();
  const before = p.kill(component);
  await p.restarted(component, before, 60_000);
  const restartMs = Math.round(performance.now() - from);
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline) {
    const last = load.warm.slice(-8);
    if (last.length === 8 && last.every((o) => o.ok && o.start > from)) break;
    await sleep(50);
  }
  await sleep(settleMs);
  const to = performance.now();
  return {
    component,
    restartMs,
    warm: errorWindow(load.warm, from, to),
    async: errorWindow(load.async, from, to),
    writes: errorWindow(load.writes, from, to),
  };
}

/** Call ids not (yet) succeeded, waiting up to `timeoutMs` for stragglers (redeliveries). */
export async function unfinishedCalls(
  p: FaultPlatform,
  ids: readonly string[],
  timeoutMs: number,
): Promise<Map<string, string>> {
  const pending = new Map(ids.map((id) => [id, "unknown"]));
  const deadline = Date.now() + timeoutMs;
  while (pending.size > 0 && Date.now() < deadline) {
    for (const id of [...pending.keys()]) {
      const r = await fetch(`${p.gatewayUrl}/async-function/warm/${id}`).catch(() => undefined);
      const text = (await r?.text()) ?? "";
      if (r?.status !== 200) {
        pending.set(id, `${r?.status ?? "no answer"} ${text.slice(0, 80)}`);
        continue;
      }
      const s = JSON.parse(text) as { state?: string; status?: number };
      if (s.state === "succeeded") pending.delete(id);
      else pending.set(id, text.slice(0, 160));
    }
    if (pending.size > 0) await sleep(500);
  }
  return pending;
}

/** Acknowledged environment writes that are missing now. */
export async function missingWrites(p: FaultPlatform, names: readonly string[]): Promise<string[]> {
  const body = (await ok(p.api("GET", "/v1/namespaces/default/environments"), "list")) as {
    items: { metadata: { name: string } }[];
  };
  const have = new Set(body.items.map((i) => i.metadata.name));
  return names.filter((n) => !have.has(n));
}

export function shutdown(p: FaultPlatform | undefined, load: Load | undefined): Promise<void> {
  return (async () => {
    await load?.stop();
    await p?.stop();
  })();
}
