import http from "node:http";
import https from "node:https";
import { linkedSignal } from "@fizz/kit";
import type { KubeConfig } from "@kubernetes/client-node";

/**
 * The few apiserver calls the kubewatcher makes (discovery GETs, list, watch), over node:http with
 * client-node's KubeConfig for the address, TLS and credentials. Why not client-node's typed
 * clients and informer: a watch trigger names any resource (core, any group, custom resources), so
 * the paths are built from discovery, and the watch must resume from a resourceVersion we persist,
 * pause while an event is being published (back-pressure) and hand each event over only after the
 * previous one was delivered. The generic informer does none of that.
 */

/** A failed call: `status` is the HTTP status (or a watch ERROR's code), undefined for network errors. */
export class KubeApiError extends Error {
  override readonly name = "KubeApiError";
  constructor(
    message: string,
    readonly status: number | undefined,
    readonly reason: string | undefined,
    opts: { cause?: unknown } = {},
  ) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
  }

  /** 410 Gone: the resourceVersion asked for is older than what the apiserver keeps. */
  get gone(): boolean {
    return this.status === 410 || this.reason === "Expired" || this.reason === "Gone";
  }
}

/** Any Kubernetes object, as far as the kubewatcher needs to know. */
export interface KubeObject {
  apiVersion?: string;
  kind?: string;
  metadata?: {
    name?: string;
    namespace?: string;
    uid?: string;
    resourceVersion?: string;
    [k: string]: unknown;
  };
  [k: string]: unknown;
}

export interface WatchEvent {
  type: "ADDED" | "MODIFIED" | "DELETED" | "BOOKMARK" | "ERROR";
  object: KubeObject;
}

export interface ListResult {
  items: KubeObject[];
  /** The list's own resourceVersion: a watch from it misses nothing and repeats nothing. */
  resourceVersion: string;
}

type Query = Record<string, string | undefined>;

/** KubeApiError.reason when the configuration itself is unusable: retrying soon will not help. */
export const NOT_CONFIGURED = "NotConfigured";

const LIST_PAGE = 500;

export class KubeClient {
  /**
   * False when no Kubernetes is configured at all (no FIZZ_KUBECONFIG, not in a pod, no default
   * kubeconfig): client-node then falls back to http://localhost:8080, which is never meant. A
   * laptop running `npm start` without a cluster is that case; triggers wait, health does not.
   */
  readonly configured: boolean;

  /** `kc` undefined: nothing to load (kube-config-source.ts), so not configured either. */
  constructor(private readonly kc: KubeConfig | undefined) {
    this.configured =
      kc !== undefined &&
      !(
        kc.getCurrentContext() === "loaded-context" &&
        kc.getCurrentCluster()?.name === "cluster" &&
        kc.getCurrentCluster()?.server === "http://localhost:8080" &&
        !kc.getCurrentUser()?.token
      );
  }

  /** A GET answered with JSON. */
  async get<T>(path: string, query: Query = {}, signal?: AbortSignal): Promise<T> {
    // Linked, not AbortSignal.any: `signal` is the service's, and any() would leave a WeakRef on
    // it per request for good on Node 20 (linkedSignal says why).
    const op = linkedSignal([signal], 30_000);
    try {
      const res = await this.open(path, query, op.signal);
      return JSON.parse(await readAll(res)) as T;
    } finally {
      op.release();
    }
  }

  /**
   * Every object at `path` matching the selectors, page by page. Pages share the first page's
   * snapshot; when the continue token expires (410) the listing starts over.
   */
  async list(path: string, query: Query, signal?: AbortSignal): Promise<ListResult> {
    for (;;) {
      const items: KubeObject[] = [];
      let resourceVersion = "";
      let cont: string | undefined;
      try {
        do {
          const page = await this.get<{
            items?: KubeObject[];
            metadata?: { resourceVersion?: string; continue?: string };
          }>(path, { ...query, limit: String(LIST_PAGE), continue: cont }, signal);
          items.push(...(page.items ?? []));
          if (!resourceVersion) resourceVersion = page.metadata?.resourceVersion ?? "";
          cont = page.metadata?.continue || undefined;
        } while (cont);
      } catch (err) {
        if (cont && err instanceof KubeApiError && err.gone) continue;
        throw err;
      }
      return { items, resourceVersion };
    }
  }

  /**
   * Opens a watch; resolves once the apiserver accepted it (KubeApiError when it refused) with the
   * events, one at a time: the next line is read only when the caller asks for it, so a slow
   * consumer holds the stream (TCP back-pressure) instead of buffering it. The events end when the
   * server closes the watch, and fail when `signal` aborts.
   */
  async watch(
    path: string,
    query: Query,
    signal: AbortSignal,
  ): Promise<AsyncGenerator<WatchEvent>> {
    const res = await this.open(path, { ...query, watch: "true" }, signal);
    return events(res);
  }

  /** Sends a GET and resolves with the response once it answered 200; else a KubeApiError. */
  private async open(
    path: string,
    query: Query,
    signal: AbortSignal,
  ): Promise<http.IncomingMessage> {
    const kc = this.kc;
    const cluster = kc?.getCurrentCluster();
    if (!kc || !cluster || !this.configured) {
      throw new KubeApiError(
        "no Kubernetes configured: set FIZZ_KUBECONFIG, run in a pod, or provide ~/.kube/config",
        undefined,
        NOT_CONFIGURED,
      );
    }
    const url = new URL(cluster.server.replace(/\/+$/, "") + path);
    for (const [k, v] of Object.entries(query)) if (v !== undefined) url.searchParams.set(k, v);
    // Credentials are applied per request: in-cluster tokens are rotated on disk.
    const opts: https.RequestOptions = {};
    try {
      await kc.applyToHTTPSOptions(opts);
    } catch (err) {
      throw new KubeApiError(
        `cannot use the kubeconfig: ${(err as Error).message}`,
        undefined,
        NOT_CONFIGURED,
        { cause: err },
      );
    }
    const headers = { ...(opts.headers ?? {}), accept: "application/json" };
    const mod = url.protocol === "http:" ? http : https;
    return new Promise((resolve, reject) => {
      const req = mod.request(url, { ...opts, method: "GET", headers, signal }, (res) => {
        if (res.statusCode === 200) return resolve(res);
        readAll(res).then(
          (text) => reject(statusError(res.statusCode, text)),
          (err: unknown) => reject(networkError(err)),
        );
      });
      req.on("error", (err) => reject(networkError(err)));
      req.end();
    });
  }
}

async function* events(res: http.IncomingMessage): AsyncGenerator<WatchEvent> {
  res.setEncoding("utf8");
  let buffered = "";
  try {
    for await (const chunk of res as AsyncIterable<string>) {
      buffered += chunk;
      for (let nl = buffered.indexOf("\n"); nl >= 0; nl = buffered.indexOf("\n")) {
        const line = buffered.slice(0, nl).trim();
        buffered = buffered.slice(nl + 1);
        if (line) yield parseEvent(line);
      }
    }
  } finally {
    res.destroy();
  }
}

async function readAll(res: http.IncomingMessage): Promise<string> {
  res.setEncoding("utf8");
  let text = "";
  for await (const chunk of res as AsyncIterable<string>) text += chunk;
  return text;
}

function parseEvent(line: string): WatchEvent {
  let ev: unknown;
  try {
    ev = JSON.parse(line);
  } catch (err) {
    throw new KubeApiError(
      `watch sent a line that is not JSON: ${line.slice(0, 120)}`,
      undefined,
      undefined,
      {
        cause: err,
      },
    );
  }
  const e = ev as Partial<WatchEvent>;
  if (typeof e.type !== "string" || typeof e.object !== "object" || e.object === null) {
    throw new KubeApiError(`watch sent an event without type or object`, undefined, undefined);
  }
  return e as WatchEvent;
}

/** A watch ERROR event carries a Status object, like a failed request's body. */
export function statusObjectError(status: KubeObject, fallback?: number): KubeApiError {
  const s = status as { code?: unknown; reason?: unknown; message?: unknown };
  const code = typeof s.code === "number" ? s.code : fallback;
  const reason = typeof s.reason === "string" ? s.reason : undefined;
  const message = typeof s.message === "string" ? s.message : "no message";
  return new KubeApiError(`apiserver answered ${code ?? "?"}: ${message}`, code, reason);
}

function statusError(code: number | undefined, body: string): KubeApiError {
  try {
    return statusObjectError(JSON.parse(body) as KubeObject, code);
  } catch {
    return new KubeApiError(
      `apiserver answered ${code ?? "?"}: ${body.slice(0, 200)}`,
      code,
      undefined,
    );
  }
}

function networkError(err: unknown): KubeApiError {
  if (err instanceof KubeApiError) return err;
  const e = err as Error;
  return new KubeApiError(`apiserver unreachable: ${e.message}`, undefined, e.name, { cause: err });
}
