/** The registry REST API (docs/api.md), one method per endpoint, all scoped to one namespace. */
import { CliError, withHint } from "./errors.js";
import {
  errorFromResponse,
  isSuccess,
  send,
  type FetchFn,
  type RawResponse,
  type Target,
} from "./http.js";
import type { FoundToken } from "./token.js";
import type { List } from "./types.js";

export type Kind =
  "environments" | "functions" | "httptriggers" | "mqtriggers" | "timetriggers" | "watchtriggers";

/**
 * Control-plane calls are small and answered from the registry's own store; a registry that
 * takes longer than this is stuck, and a CLI that hangs forever is worse than one that says so.
 */
const REGISTRY_TIMEOUT_MS = 30_000;

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

  list<T>(kind: Kind): Promise<List<T>> {
    return this.json("GET", this.path(kind));
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

  private path(kind: Kind, name?: string): string {
    const base = `/v1/namespaces/${encodeURIComponent(this.opts.namespace)}/${kind}`;
    return name === undefined ? base : `${base}/${encodeURIComponent(name)}`;
  }

  private async json<T>(method: string, path: string, body?: unknown): Promise<T> {
    const res = await this.request(method, path, body);
    try {
      return JSON.parse(res.body.toString("utf8")) as T;
    } catch {
      throw new CliError(
        `the registry at ${this.opts.baseUrl} answered ${method} ${path} with a body that is not JSON`,
      );
    }
  }

  private async request(method: string, path: string, body?: unknown): Promise<RawResponse> {
    const headers: Record<string, string> = { accept: "application/json" };
    const init: RequestInit = { method, headers };
    if (body !== undefined) {
      headers["content-type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const auth = this.opts.token?.();
    if (auth) headers.authorization = `Bearer ${auth.token}`;
    const res = await send(
      this.opts.fetch,
      this.target,
      `${this.opts.baseUrl}${path}`,
      init,
      this.opts.timeoutMs ?? REGISTRY_TIMEOUT_MS,
    );
    if (res.status === 401) {
      throw withHint(
        errorFromResponse(res),
        auth
          ? `the registry refused the token from ${auth.source}: set FIZZ_TOKEN to its current admin token (npm start writes it to .fizz/admin-token)`
          : NEEDS_TOKEN_HINT,
      );
    }
    if (!isSuccess(res.status)) throw errorFromResponse(res);
    return res;
  }
}
