import { readdirSync, readFileSync } from "node:fs";
import http from "node:http";
import { Codecs, subjects, type Instance } from "@fizz/events";
import { connectNats, request, silentLogger, type NatsConnection } from "@fizz/kit";
import { expect } from "chai";
import type { Platform } from "./helpers";

/**
 * What the end-to-end suites look at besides HTTP answers: the poolkeeper's instance list (over
 * NATS, as the scheduler sees it), the instance processes (/proc), and a few HTTP helpers that
 * keep per-request timing.
 */

export class Instances {
  private constructor(
    private readonly nc: NatsConnection,
    private readonly subject: string,
  ) {}

  static async connect(p: Platform): Promise<Instances> {
    // The probe asks what the scheduler asks, so it connects as the scheduler.
    const nc = await connectNats({
      url: p.natsUrlAs("scheduler"),
      name: "e2e-probe",
      logger: silentLogger(),
    });
    const prefix = process.env.FIZZ_SUBJECT_PREFIX;
    return new Instances(nc, subjects(prefix || undefined).poolkeeperList);
  }

  /** poolkeeper.list: every instance that exists (warm and specialized). */
  async list(): Promise<Instance[]> {
    const r = await request(
      this.nc,
      this.subject,
      Codecs.poolkeeperList,
      {},
      { sender: "e2e", timeoutMs: 5000 },
    );
    return r.instances;
  }

  /** Specialized instances of one function (any revision unless given). */
  async of(fn: string, opts: { namespace?: string; revision?: number } = {}): Promise<Instance[]> {
    const ns = opts.namespace ?? "default";
    return (await this.list()).filter(
      (i) =>
        i.state === "specialized" &&
        i.function?.namespace === ns &&
        i.function.name === fn &&
        (opts.revision === undefined || i.function.revision === opts.revision),
    );
  }

  /** Warm (generic) instances of one environment. */
  async warm(env: string, namespace = "default"): Promise<Instance[]> {
    return (await this.list()).filter(
      (i) =>
        i.state === "warm" && i.environment.name === env && i.environment.namespace === namespace,
    );
  }

  async close(): Promise<void> {
    await this.nc.close();
  }
}

/** Pid of the instance process started with FIZZ_INSTANCE_ID=<id>, from /proc/<pid>/environ. */
export function pidOfInstance(id: string): number | undefined {
  return findPid((environ) => environ.includes(`FIZZ_INSTANCE_ID=${id}`));
}

/** Pid of the gateway service listening on `gatewayUrl`'s port. */
export function gatewayPid(gatewayUrl: string): number | undefined {
  const port = new URL(gatewayUrl).port;
  return findPid(
    (environ, cmdline) =>
      // From its bundle (dist/gateway.mjs, as npm start runs it) or its sources (FIZZ_FROM_SOURCE=1).
      /(services\/gateway\/src\/main\.ts|\/gateway\.mjs)(\s|$)/.test(cmdline) &&
      environ.includes(`FIZZ_GATEWAY_PORT=${port}`),
  );
}

function findPid(match: (environ: string[], cmdline: string) => boolean): number | undefined {
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const environ = readFileSync(`/proc/${entry}/environ`, "latin1").split("\0");
      const cmdline = readFileSync(`/proc/${entry}/cmdline`, "latin1").replaceAll("\0", " ");
      if (match(environ, cmdline)) return Number(entry);
    } catch {
      // The process went away while we looked, or is not ours.
    }
  }
  return undefined;
}

/** True while the process exists and is not a zombie. */
export function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "latin1");
    const state = stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3);
    return state !== "Z" && state !== "X";
  } catch {
    return false;
  }
}

/** Resident set size in bytes (VmRSS). */
export function rssBytes(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, "latin1");
  const m = /VmRSS:\s+(\d+) kB/.exec(status);
  if (!m?.[1]) throw new Error(`no VmRSS for pid ${pid}`);
  return Number(m[1]) * 1024;
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Polls until `check` is truthy; fails with `what` and the last value seen. */
export async function eventually<T>(
  what: string,
  check: () => T | Promise<T>,
  timeoutMs: number,
  intervalMs = 100,
): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      last = await check();
      if (last) return last as NonNullable<T>;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) {
      throw new Error(`after ${timeoutMs} ms still not: ${what} (last: ${describe(last)})`);
    }
    await sleep(intervalMs);
  }
}

function describe(v: unknown): string {
  if (v instanceof Error) return v.message;
  try {
    return JSON.stringify(v);
  } catch {
    return String(v);
  }
}

export interface Timed {
  status: number;
  text: string;
  headers: Headers;
  /** performance.now() when the request was sent and when its body was complete. */
  startedAt: number;
  endedAt: number;
  ms: number;
  /** Set when the request failed at the transport level (no HTTP answer). */
  error?: string;
}

/** A fetch that never throws: a transport failure becomes status 0 with `error`. */
export async function timed(url: string, init?: RequestInit): Promise<Timed> {
  const startedAt = performance.now();
  try {
    const res = await fetch(url, init);
    const text = await res.text();
    const endedAt = performance.now();
    return {
      status: res.status,
      text,
      headers: res.headers,
      startedAt,
      endedAt,
      ms: endedAt - startedAt,
    };
  } catch (err) {
    const endedAt = performance.now();
    const e = err as Error & { cause?: Error };
    return {
      status: 0,
      text: "",
      headers: new Headers(),
      startedAt,
      endedAt,
      ms: endedAt - startedAt,
      error: `${e.message}${e.cause ? `: ${e.cause.message}` : ""}`,
    };
  }
}

export function json<T = Record<string, unknown>>(r: { text: string; status: number }): T {
  try {
    return JSON.parse(r.text) as T;
  } catch {
    throw new Error(`not JSON (status ${r.status}): ${r.text.slice(0, 300)}`);
  }
}

/** Error code of a platform JSON error body, or undefined. */
export function errorCode(r: { text: string }): string | undefined {
  try {
    return (JSON.parse(r.text) as { error?: { code?: string } }).error?.code;
  } catch {
    return undefined;
  }
}

/** Runs `fizz <args>` (split on spaces: no argument here holds one) and expects exit status 0. */
export async function fizzOk(p: Platform, args: string) {
  const r = await p.fizz(...args.split(" "));
  expect(r.code, `fizz ${args}\n${r.stdout}\n${r.stderr}`).to.equal(0);
  return r;
}

/** A raw HTTP/1.1 exchange over node:http with exactly the headers given (no fetch rules). */
export function rawRequest(
  url: string,
  opts: { method?: string; headers?: Record<string, string>; body?: Buffer | string } = {},
): Promise<{ status: number; headers: http.IncomingHttpHeaders; text: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, {
      method: opts.method ?? "GET",
      headers: opts.headers,
      agent: false,
    });
    req.once("error", reject);
    req.once("response", (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.once("error", reject);
      res.once("end", () =>
        resolve({
          status: res.statusCode ?? 0,
          headers: res.headers,
          text: Buffer.concat(chunks).toString("utf8"),
        }),
      );
    });
    req.end(opts.body);
  });
}

/** Dumps the platform's last log lines when a test failed. */
export function dumpLogsOnFailure(getP: () => Platform | undefined, lines = 80) {
  return function (this: Mocha.Context) {
    const p = getP();
    if (p && this.currentTest?.state === "failed") console.error(p.logs.slice(-lines).join("\n"));
  };
}
