// Test harness for the runtime integration tests (node and python): spawns a real runtime process
// on a free port and talks to it over real HTTP.
import { spawn, type ChildProcess } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import http, { type IncomingHttpHeaders } from "node:http";
import { tmpdir } from "node:os";
import path from "node:path";
import { freePort } from "@fizz/testkit";

/** For the runtimes' own tests (their workspaces do not depend on the testkit). */
export { freePort };
import type { WireError } from "@fizz/events";
import { jsonObject, wireError, type JsonObject } from "../../test/lib/json-answer.js";

/** How to run one language's runtime: `command script args...` in `cwd`, configured through its
 * environment. A custom environment's command may have no script. */
export interface RuntimeCommand {
  name: string;
  command: string;
  script?: string;
  args?: string[];
  cwd?: string;
}

export interface HttpResult {
  status: number;
  headers: IncomingHttpHeaders;
  body: Buffer;
  text: string;
  /** The body parsed as JSON; undefined when empty or not JSON. Read it through object()/error(). */
  json: unknown;
  /** The body as a JSON object (fails the test when it is not one). */
  object(): JsonObject;
  /** The body as a platform error answer (fails the test when it is not one). */
  error(): WireError;
  /** The local port of the client socket, to tell whether a connection was reused. */
  localPort: number | undefined;
}

export interface RequestOptions {
  method?: string;
  path?: string;
  headers?: Record<string, string | number>;
  /** Sent in one piece, or as chunks (chunked transfer encoding, no Content-Length). */
  body?: string | Buffer | Array<string | Buffer>;
  agent?: http.Agent | false;
}

export function request(baseUrl: string, options: RequestOptions = {}): Promise<HttpResult> {
  const { method = "GET", path = "/", headers = {}, body, agent = false } = options;
  return new Promise((resolve, reject) => {
    const req = http.request(new URL(path, baseUrl), { method, headers, agent }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (chunk: Buffer) => chunks.push(chunk));
      res.on("error", reject);
      res.on("end", () => {
        const data = Buffer.concat(chunks);
        const text = data.toString("utf8");
        let json: unknown;
        try {
          json = text ? JSON.parse(text) : undefined;
        } catch {
          json = undefined;
        }
        resolve({
          status: res.statusCode ?? 0,
          headers: res.headers,
          body: data,
          text,
          json,
          object: () => jsonObject(json),
          error: () => wireError(json),
          localPort: req.socket?.localPort,
        });
      });
    });
    req.on("error", reject);
    if (Array.isArray(body)) {
      for (const chunk of body) req.write(chunk);
      req.end();
    } else {
      req.end(body);
    }
  });
}

export interface Runtime {
  url: string;
  proc: ChildProcess;
  stdout(): string;
  stderr(): string;
  /** Resolves with the exit code (or the signal name) once the process is gone. */
  exited: Promise<number | string | null>;
  /** SIGKILL if still running, then remove its temp dir; for after hooks. */
  kill(): Promise<void>;
}

export interface StartOptions {
  /** stdin is a pipe the test can close (the process backend's FIZZ_PARENT_STDIN=1). */
  stdinPipe?: boolean;
}

/**
 * What the poolkeeper's process backend gives an instance besides the FIZZ_* variables
 * (docs/runtime-contract.md, "What the platform passes"), and nothing of the test runner's own
 * environment: a runtime that needs more fails here rather than in production.
 */
export function minimalEnv(scratch: string): Record<string, string> {
  return {
    PATH: "/usr/local/bin:/usr/bin:/bin",
    LANG: "C.UTF-8",
    HOME: scratch,
    TMPDIR: scratch,
    PYTHONUNBUFFERED: "1",
    ...(process.env.TZ === undefined ? {} : { TZ: process.env.TZ }),
  };
}

export async function startRuntime(
  { name, command, script, args = [], cwd }: RuntimeCommand,
  env: Record<string, string> = {},
  options: StartOptions = {},
): Promise<Runtime> {
  const port = await freePort();
  // A private TMPDIR: the runtime's default work dir (a fresh temp dir) lands inside it and goes
  // away with it.
  const scratch = mkdtempSync(path.join(tmpdir(), `fizz-${name}-runtime-test-`));
  const proc = spawn(command, script === undefined ? args : [script, ...args], {
    ...(cwd === undefined ? {} : { cwd }),
    env: { ...minimalEnv(scratch), PORT: String(port), HOST: "127.0.0.1", ...env },
    stdio: [options.stdinPipe ? "pipe" : "ignore", "pipe", "pipe"],
  });
  let out = "";
  let err = "";
  proc.stdout?.on("data", (d: Buffer) => (out += d.toString()));
  proc.stderr?.on("data", (d: Buffer) => (err += d.toString()));
  const exited = new Promise<number | string | null>((resolve) =>
    proc.once("exit", (code, signal) => resolve(code ?? signal)),
  );
  const url = `http://127.0.0.1:${port}`;
  const runtime: Runtime = {
    url,
    proc,
    stdout: () => out,
    stderr: () => err,
    exited,
    kill: async () => {
      if (proc.exitCode === null && proc.signalCode === null) {
        proc.kill("SIGKILL");
        await exited;
      }
      rmSync(scratch, { recursive: true, force: true });
    },
  };
  try {
    await waitForHealthz(url, 10_000, exited);
  } catch (error) {
    await runtime.kill();
    throw new Error(`${name} runtime did not come up: ${String(error)}\nstderr:\n${err}`);
  }
  return runtime;
}

export async function waitForHealthz(
  url: string,
  timeoutMs: number,
  exited?: Promise<unknown>,
): Promise<void> {
  let gone = false;
  void exited?.then(() => (gone = true));
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (gone) throw new Error("process exited");
    try {
      const res = await request(url, { path: "/healthz" });
      if (res.status === 200) return;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) throw new Error(`no /healthz within ${timeoutMs}ms`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

export interface SpecializeOptions {
  entrypoint?: string;
  concurrency?: number;
  env?: Record<string, string>;
  instanceId?: string;
}

export function specializeBody(filename: string, source: string, options: SpecializeOptions = {}) {
  return {
    function: { namespace: "default", name: "hello", revision: 3 },
    filename,
    code: Buffer.from(source).toString("base64"),
    ...options,
  };
}

export function specialize(
  rt: Runtime,
  filename: string,
  source: string,
  options: SpecializeOptions = {},
) {
  return postJson(rt.url, "/v2/specialize", specializeBody(filename, source, options));
}

export const ARCHIVE_CONTENT_TYPE = "application/vnd.fizz.specialize+tar";

export interface ArchiveSpecializeOptions extends SpecializeOptions {
  /** Defaults to the archive's own sha256. */
  digest?: string;
  secrets?: Record<string, Record<string, string>>;
  configmaps?: Record<string, Record<string, string>>;
  headers?: Record<string, string>;
  /** Chunked, in three pieces (the line, then the archive in two halves), instead of one body
   * with Content-Length as the poolkeeper sends it. */
  chunked?: boolean;
}

export const sha256 = (data: string | Buffer) =>
  `sha256:${createHash("sha256").update(data).digest("hex")}`;

/** The archive form: one line of JSON, then the tar.gz. */
export function specializeArchive(
  rt: Runtime,
  archive: Buffer,
  options: ArchiveSpecializeOptions = {},
) {
  const { headers = {}, digest = sha256(archive), chunked = false, ...fields } = options;
  const line = JSON.stringify({
    function: { namespace: "default", name: "hello", revision: 3 },
    digest,
    ...fields,
  });
  const half = Math.floor(archive.length / 2);
  const head = Buffer.from(`${line}\n`);
  return request(rt.url, {
    method: "POST",
    path: "/v2/specialize",
    headers: { "content-type": ARCHIVE_CONTENT_TYPE, ...headers },
    body: chunked
      ? [head, archive.subarray(0, half), archive.subarray(half)]
      : Buffer.concat([head, archive]),
  });
}

export function postJson(
  baseUrl: string,
  path: string,
  value: unknown,
  headers: Record<string, string> = {},
) {
  return request(baseUrl, {
    method: "POST",
    path,
    headers: { "content-type": "application/json", ...headers },
    body: JSON.stringify(value),
  });
}

/** Records when each body chunk arrives, to prove a response is streamed rather than buffered. */
export function timedChunks(
  baseUrl: string,
  path: string,
  headers: Record<string, string>,
): Promise<{
  status: number;
  headers: IncomingHttpHeaders;
  chunks: Array<{ at: number; data: string }>;
}> {
  return new Promise((resolve, reject) => {
    const started = Date.now();
    const req = http.request(new URL(path, baseUrl), { headers, agent: false }, (res) => {
      const chunks: Array<{ at: number; data: string }> = [];
      res.on("data", (d: Buffer) => chunks.push({ at: Date.now() - started, data: d.toString() }));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, chunks }));
      res.on("error", reject);
    });
    req.on("error", reject);
    req.end();
  });
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Polls until `check` returns true: output from a child's pipe trails the HTTP response. */
export async function eventually(check: () => boolean, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`condition not met within ${timeoutMs}ms`);
    await sleep(10);
  }
}
