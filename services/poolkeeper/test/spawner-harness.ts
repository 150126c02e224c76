import { spawn, type ChildProcessWithoutNullStreams } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { createInterface } from "node:readline";
import type { Readable } from "node:stream";
import {
  SPAWNER_SCRIPT,
  startSpawner,
  type Spawner,
  type SpawnerOptions,
} from "../src/spawner-client";

/** Debian's python3, which the poolkeeper runs the spawner with as root. */
export const PYTHON = "/usr/bin/python3";

export async function readAll(s: Readable | null | undefined): Promise<string> {
  if (!s) return "";
  let out = "";
  s.setEncoding("utf8");
  for await (const chunk of s) out += chunk as string;
  return out;
}

/** Running: in /proc and neither a zombie nor dead (reparented, it may wait to be reaped). */
export function alive(pid: number): boolean {
  try {
    const state = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]?.[0];
    return state !== "Z" && state !== "X";
  } catch {
    return false;
  }
}

export interface SpawnerHarness {
  /** This test's own temporary directory (removed after it). */
  readonly dir: string;
  /** A spawner with its socket under `dir` (or `sockDir`), closed after the test. */
  start(
    opts?: Partial<Omit<SpawnerOptions, "python" | "dir">> & { sockDir?: string },
  ): Promise<Spawner>;
}

/**
 * Registers the mocha hooks every spawner test file needs, inside its describe(): the file is
 * skipped without PYTHON, each test gets a fresh directory, and every spawner a test started is
 * closed (its children die by their parent-death signal) and the directory removed after it.
 */
export function useSpawnerHarness(prefix: string): SpawnerHarness {
  let dir = "";
  const started: Spawner[] = [];
  before(function () {
    if (!existsSync(PYTHON)) this.skip();
  });
  beforeEach(() => {
    dir = mkdtempSync(path.join(tmpdir(), prefix));
  });
  afterEach(async () => {
    for (const sp of started.splice(0)) if (sp.usable) await sp.close();
    rmSync(dir, { recursive: true, force: true });
  });
  return {
    get dir() {
      return dir;
    },
    async start(opts = {}) {
      const { sockDir = path.join(dir, "sock"), ...rest } = opts;
      const sp = await startSpawner({ python: PYTHON, dir: sockDir, ...rest });
      started.push(sp);
      return sp;
    },
  };
}

/** The spawner spoken to in its own protocol on its stdin, as the client never would. */
export interface RawSpawner {
  readonly py: ChildProcessWithoutNullStreams;
  /** Its stdout events so far, in order. */
  readonly events: Array<Record<string, unknown>>;
  /** Its stderr lines so far. */
  readonly errors: string[];
  readonly send: (msg: object) => void;
  /** Resolves with the event once reported, or undefined if its output ended first. */
  seen(ev: string, id: unknown): Promise<Record<string, unknown> | undefined>;
  /** Ends its stdin (the poolkeeper's end) and resolves with its exit. */
  end(): Promise<[number | null, NodeJS.Signals | null]>;
}

export function startRawSpawner(sockPath: string): RawSpawner {
  const py = spawn(PYTHON, ["-I", "-S", SPAWNER_SCRIPT, sockPath, `${process.pid}`], {
    stdio: ["pipe", "pipe", "pipe"],
  });
  const events: Array<Record<string, unknown>> = [];
  const errors: string[] = [];
  let closed = false;
  const waiters: Array<() => void> = [];
  const wake = () => {
    for (const w of waiters.splice(0)) w();
  };
  const out = createInterface({ input: py.stdout });
  out.on("line", (l) => {
    events.push(JSON.parse(l) as Record<string, unknown>);
    wake();
  });
  out.once("close", () => {
    closed = true;
    wake();
  });
  const errClosed = new Promise<void>((resolve) =>
    createInterface({ input: py.stderr })
      .on("line", (l) => errors.push(l))
      .once("close", resolve),
  );
  const exited = new Promise<[number | null, NodeJS.Signals | null]>((resolve) =>
    py.once("exit", (code, sig) => resolve([code, sig])),
  );
  return {
    py,
    events,
    errors,
    send: (msg) => py.stdin.write(`${JSON.stringify(msg)}\n`),
    seen: (ev, id) =>
      new Promise((resolve) => {
        const look = () => {
          const e = events.find((x) => x.ev === ev && x.id === id);
          if (e || closed) resolve(e);
          else waiters.push(look);
        };
        look();
      }),
    async end() {
      py.stdin.end();
      const result = await exited;
      await errClosed;
      return result;
    },
  };
}
