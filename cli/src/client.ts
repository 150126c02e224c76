/** The registry REST API (docs/api.md), one method per endpoint, all scoped to one namespace. */
import type { Readable } from "node:stream";
import { CliError, withHint } from "./errors.js";
import {
  errorFromResponse,
  isSuccess,
  open,
  send,
  sendStream,
  type FetchFn,
  type RawResponse,
  type Target,
} from "./http.js";
import type { FoundToken } from "./token.js";
import type { ArchiveRef, List, PackageObject } from "./types.js";

export type Kind =
  | "environments"
  | "functions"
  | "httptriggers"
  | "mqtriggers"
  | "timetriggers"
  | "watchtriggers"
  | "packages"
  | "secrets"
  | "configmaps";

/**
 * Control-plane calls are small and answered from the registry's own store; a registry that
 * takes longer than this is stuck, and a CLI that hangs forever is worse than one that says so.
 */
const REGISTRY_TIMEOUT_MS = 30_000;
/**
 * Archive uploads and downloads move up to ARCHIVE_MAX_BYTES (256 MiB) over what may be a slow
 * link, so they get a far longer bound; it only catches a transfer that is stuck for good.
 */
const TRANSFER_TIMEOUT_MS = 60 * 60_000;
/** An upload is bounded by silence instead: the registry canonicalizes after the last byte. */
const TRANSFER_IDLE_MS = 5 * 60_000;

/** Objects per list request: the registry's page limit is 1,000. */
const LIST_PAGE = 500;

export interface RegistryClientOptions {
  baseUrl: string;
  namespace: string;
  fetch: FetchFn;
  timeoutMs?: number;
  /** Looked up on the first request, so commands that never reach the registry need none. */
  token?: () => FoundToken | undefined;
}

export const NEEDS_TOKEN_HINT =
  "the registry needs a token: set FIZZ_TOKEN or run from the directory where `npm start` runs";

export interface CreateBody {
  name: string;
  labels?: Record<string, string>;
  spec: object;
}

export interface PatchBody {
  labels?: Record<string, string>;
  spec?: object;
  /** When given, the registry refuses the write if the object changed since (REVISION_CONFLICT). */
  revision?: number;
}

export class RegistryClient {
  private readonly target: Target;

  constructor(private readonly opts: RegistryClientOptions) {
    this.target = { label: "registry", baseUrl: opts.baseUrl };
  }

  get namespace(): string {
    return this.opts.namespace;
  }

  /**
   * Every object of the kind, page by page from the first request: with 10,000 objects one
   * unpaginated answer is megabytes the registry must read, parse and send in one go. A registry
   * that predates pagination ignores the query and answers everything without a `continue`
   * token, which ends the loop after one request, as before.
   */
  async list<T>(kind: Kind): Promise<List<T>> {
    const items: T[] = [];
    let query = `?limit=${LIST_PAGE}`;
    for (;;) {
      const page = await this.json<List<T> & { continue?: string }>(
        "GET",
        `${this.path(kind)}${query}`,
      );
      for (const item of page.items) items.push(item);
      if (page.continue === undefined) return { items };
      // Every page ends past the one before, so a token never comes back: a registry answering
      // the one it was given would keep this loop asking and growing without end.
      if (query.endsWith(`&continue=${encodeURIComponent(page.continue)}`))
        throw new CliError(
          `the registry answered a page of ${kind} with the continue token it was given; listing stopped`,
        );
      query = `?limit=${LIST_PAGE}&continue=${encodeURIComponent(page.continue)}`;
    }
  }

  get<T>(kind: Kind, name: string): Promise<T> {
    return this.json("GET", this.path(kind, name));
  }

  create<T>(kind: Kind, body: CreateBody): Promise<T> {
    return this.json("POST", this.path(kind), body);
  }

  update<T>(kind: Kind, name: string, body: PatchBody): Promise<T> {
    return this.json("PATCH", this.path(kind, name), body);
  }

  delete<T>(kind: Kind, name: string): Promise<T> {
    return this.json("DELETE", this.path(kind, name));
  }

  /** The function's code exactly as uploaded (bytes, not base64). */
  async getCode(name: string): Promise<Buffer> {
    const res = await this.request("GET", `${this.path("functions", name)}/code`);
    return res.body;
  }

  /**
   * Streams an archive to the registry, which stores its canonical form. `body` is pulled as the
   * request is sent (fetch's backpressure), so the archive is never held in memory.
   */
  async uploadArchive(use: "source" | "deployment", body: Readable): Promise<ArchiveRef> {
    const path = `/v1/namespaces/${encodeURIComponent(this.opts.namespace)}/archives?use=${use}`;
    const headers = this.headers({ "content-type": "application/octet-stream" });
    const url = `${this.opts.baseUrl}${path}`;
    const res = this.check(
      await sendStream(this.target, url, { method: "POST", headers }, body, TRANSFER_IDLE_MS),
    );
    const parsed = this.parse<{ archive?: ArchiveRef }>(res, "POST", path);
    if (!parsed.archive?.digest) {
      throw new CliError(
        `the registry at ${this.opts.baseUrl} answered the upload without an archive`,
      );
    }
    return parsed.archive;
  }

  /** Builds the package's current source again (e.g. after the environment's builder changed). */
  async rebuild(name: string): Promise<PackageObject> {
    const reply = await this.json<{ package?: PackageObject } & Partial<PackageObject>>(
      "POST",
      `${this.path("packages", name)}/rebuild`,
    );
    // The API answers {package}; accept the bare object too.
    return reply.package ?? (reply as PackageObject);
  }

  /** The package's canonical source or deployment archive, unread: the caller streams it. */
  async downloadArchive(
    name: string,
    which: "source" | "deployment",
  ): Promise<ReadableStream<Uint8Array>> {
    const path = `${this.path("packages", name)}/${which}`;
    const opened = await open(
      this.opts.fetch,
      this.target,
      `${this.opts.baseUrl}${path}`,
      { method: "GET", headers: this.headers({ accept: "application/gzip" }) },
      TRANSFER_TIMEOUT_MS,
    );
    if (!opened.ok) throw this.failure(opened.res);
    if (!opened.res.body) throw new CliError(`the registry sent no body for GET ${path}`);
    return opened.res.body;
  }

  /** A function's log lines as NDJSON, unread (`fn logs`; with follow it ends when `signal` aborts). */
  async openLogs(
    name: string,
    query: URLSearchParams,
    signal: AbortSignal,
  ): Promise<ReadableStream<Uint8Array>> {
    const qs = query.toString();
    const path = `${this.path("functions", name)}/logs${qs === "" ? "" : `?${qs}`}`;
    const opened = await open(this.opts.fetch, this.target, `${this.opts.baseUrl}${path}`, {
      method: "GET",
      headers: this.headers({ accept: "application/x-ndjson" }),
      signal,
    });
    if (!opened.ok) throw this.failure(opened.res);
    if (!opened.res.body) throw new CliError(`the registry sent no body for GET ${path}`);
    return opened.res.body;
  }

  private path(kind: Kind, name?: string): string {
    const base = `/v1/namespaces/${encodeURIComponent(this.opts.namespace)}/${kind}`;
    return name === undefined ? base : `${base}/${encodeURIComponent(name)}`;
  }

  private async json<T>(method: string, path: string, body?: unknown): Promise<T> {
    return this.parse<T>(await this.request(method, path, body), method, path);
  }

  private parse<T>(res: RawResponse, method: string, path: string): T {
    try {
      return JSON.parse(res.body.toString("utf8")) as T;
    } catch {
      throw new CliError(
        `the registry at ${this.opts.baseUrl} answered ${method} ${path} with a body that is not JSON`,
      );
    }
  }

  private async request(method: string, path: string, body?: unknown): Promise<RawResponse> {
    const headers = this.headers(body === undefined ? {} : { "content-type": "application/json" });
    const init: RequestInit = { method, headers };
    if (body !== undefined) init.body = JSON.stringify(body);
    const res = await send(
      this.opts.fetch,
      this.target,
      `${this.opts.baseUrl}${path}`,
      init,
      this.opts.timeoutMs ?? REGISTRY_TIMEOUT_MS,
    );
    return this.check(res);
  }

  private headers(extra: Record<string, string>): Record<string, string> {
    const headers: Record<string, string> = { accept: "application/json", ...extra };
    const auth = this.opts.token?.();
    if (auth) headers.authorization = `Bearer ${auth.token}`;
    return headers;
  }

  /** Passes a 2xx answer through; anything else becomes an ApiError. */
  private check(res: RawResponse): RawResponse {
    if (!isSuccess(res.status)) throw this.failure(res);
    return res;
  }

  /** The error of a non-2xx answer; a 401 says which token was refused, or that one is needed. */
  private failure(res: RawResponse): CliError {
    if (res.status !== 401) return errorFromResponse(res);
    const auth = this.opts.token?.();
    return withHint(
      errorFromResponse(res),
      auth
        ? `the registry refused the token from ${auth.source}: set FIZZ_TOKEN to its current admin token (npm start writes it to .fizz/admin-token)`
        : NEEDS_TOKEN_HINT,
    );
  }
}
