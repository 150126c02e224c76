import type { WatchTrigger } from "@fizz/events";
import { linkedSignal, retryUntil, sleep, type Logger } from "@fizz/kit";
import type { KubeEvent, Publisher } from "./delivery";
import {
  collectionPath,
  UnknownResourceError,
  type Discovery,
  type ResolvedResource,
} from "./discovery";
import {
  KubeApiError,
  NOT_CONFIGURED,
  statusObjectError,
  type KubeClient,
  type KubeObject,
} from "./kube-client";
import { recordOf, resync, saveSnapshot } from "./resync";
import { CursorConflictError, type Cursor, type WatchStateStore } from "./state-store";
import { describeKey, type WatchKey } from "./watch-key";

export type WatchState =
  "standby" | "resolving" | "syncing" | "watching" | "retrying" | "failed" | "refused";

export interface WatchStatus {
  state: WatchState;
  reason?: string;
}

export interface KeyWatchDeps {
  client: KubeClient;
  discovery: Discovery;
  state: WatchStateStore;
  publisher: Publisher;
  clusterScope: boolean;
  resolveRetryMs: number;
  logger: Logger;
  onResync(): void;
  onKubeReachable(ok: boolean): void;
}

/**
 * One informer: list+watch of one (resource, namespace, labels, fields), the selectors applied by
 * the apiserver, shared by every trigger with that key. Events are handled one at a time, in the
 * order the apiserver sends them: published for each interested trigger (acknowledged by
 * JetStream), then recorded in the snapshot, then the cursor moves to the event's
 * resourceVersion. Bookmarks move the cursor too, so a quiet watch does not fall behind.
 *
 * - First start of a key (no cursor): list, record every object silently, watch from the list's
 *   resourceVersion. Objects that exist before the trigger are not announced.
 * - Restart: watch from the cursor: the apiserver sends exactly what happened since.
 * - 410 Gone (the cursor is older than what the apiserver keeps): relist and deliver the
 *   difference with the snapshot (resync.ts).
 */
export class KeyWatch {
  readonly triggers = new Map<string, WatchTrigger>();
  status: WatchStatus = { state: "standby" };
  private running: { abort: AbortController; done: Promise<void> } | undefined;
  private readonly log: Logger;
  private readonly describe: string;

  constructor(
    readonly keyId: string,
    readonly key: WatchKey,
    private readonly deps: KeyWatchDeps,
  ) {
    this.describe = describeKey(key);
    this.log = deps.logger.child({ component: "watch", key: this.describe, keyId });
  }

  start(): void {
    if (this.running) return;
    const abort = new AbortController();
    this.running = { abort, done: this.loop(abort.signal) };
  }

  async stop(): Promise<void> {
    const r = this.running;
    if (!r) return;
    this.running = undefined;
    r.abort.abort();
    await r.done;
    this.status = { state: "standby" };
  }

  /**
   * Watch sessions one after another until stopped. A failed session is retried with back-off
   * (from the cursor: nothing is lost); the back-off restarts after a session that ended well. A
   * refusal (unknown resource, forbidden) is not a retry: it is reported and looked at again every
   * resolveRetryMs.
   */
  private async loop(signal: AbortSignal): Promise<void> {
    const target: { resolved?: ResolvedResource | undefined } = {};
    while (!signal.aborted) {
      try {
        const ended = await retryUntil(() => this.session(target, signal), {
          baseMs: 500,
          maxMs: 30_000,
          signal,
          retryable: (err) => !(err instanceof UnknownResourceError || isRefusal(err)),
          onRetry: ({ err, waitMs }) => this.retrying(err, waitMs, target),
        });
        if (ended === "refused") return;
      } catch (err) {
        if (signal.aborted) return;
        const why = errMessage(err);
        if (this.status.reason !== why) {
          this.log.error({ err: why, triggers: [...this.triggers.keys()] }, "watch trigger failed");
        }
        this.set("failed", why);
        await sleep(this.deps.resolveRetryMs, signal);
      }
    }
  }

  /** Resolves the resource when needed, then follows it for one session. */
  private async session(
    target: { resolved?: ResolvedResource | undefined },
    signal: AbortSignal,
  ): Promise<"ended" | "refused"> {
    if (!target.resolved) {
      this.set("resolving");
      target.resolved = await this.deps.discovery.resolve(this.key.resource, signal);
      this.deps.onKubeReachable(true);
      if (!target.resolved.namespaced && !this.deps.clusterScope) {
        this.set(
          "refused",
          `${target.resolved.plural} is cluster-scoped; FIZZ_WATCH_CLUSTER_SCOPE is off`,
        );
        this.log.error(
          { triggers: [...this.triggers.keys()] },
          "refusing to watch a cluster-scoped resource: set FIZZ_WATCH_CLUSTER_SCOPE=true to allow it",
        );
        return "refused";
      }
    }
    await this.follow(target.resolved, signal);
    return "ended";
  }

  private retrying(
    err: unknown,
    waitMs: number,
    target: { resolved?: ResolvedResource | undefined },
  ): void {
    // The resource is gone (a CRD deleted): look it up again.
    if (err instanceof KubeApiError && err.status === 404) target.resolved = undefined;
    if (err instanceof KubeApiError && err.status === undefined) this.deps.onKubeReachable(false);
    const why =
      err instanceof CursorConflictError ? "another replica moved the cursor" : errMessage(err);
    this.set("retrying", why);
    this.log.warn(
      { err: why, retryInMs: waitMs },
      "watch failed; resuming from the last delivered resourceVersion",
    );
  }

  /** One watch session, from the persisted cursor (created by a first listing when absent). */
  private async follow(target: ResolvedResource, signal: AbortSignal): Promise<void> {
    const path = collectionPath(target, this.key.namespace);
    const selectors = {
      labelSelector: this.key.labels || undefined,
      fieldSelector: this.key.fields || undefined,
    };
    let cursor = await this.deps.state.cursor(this.keyId);
    if (!cursor) {
      this.set("syncing");
      const list = await this.deps.client.list(path, selectors, signal);
      await saveSnapshot(this.deps.state, this.keyId, list.items);
      cursor = await this.deps.state.createCursor(this.keyId, list.resourceVersion, this.describe);
      this.log.info(
        { objects: list.items.length, resourceVersion: list.resourceVersion },
        "watch initialized; existing objects are not announced",
      );
    }
    // Like client-go: the server ends each watch after 4-6 minutes and we resume from the cursor.
    const timeoutSeconds = 240 + Math.floor(Math.random() * 120);
    // Linked, not AbortSignal.any: `signal` lives as long as the watch loop, and any() would
    // leave a WeakRef on it per session for good on Node 20 (linkedSignal says why).
    const link = linkedSignal([signal], (timeoutSeconds + 30) * 1000);
    const session = link.signal;
    try {
      const query = {
        ...selectors,
        resourceVersion: cursor.resourceVersion,
        allowWatchBookmarks: "true",
        timeoutSeconds: String(timeoutSeconds),
      };
      let events: AsyncGenerator<{ type: string; object: KubeObject }>;
      try {
        events = await this.deps.client.watch(path, query, session);
      } catch (err) {
        if (err instanceof KubeApiError && err.gone)
          return this.resync(path, selectors, target, cursor, signal);
        throw err;
      }
      this.set("watching");
      this.deps.onKubeReachable(true);
      try {
        for await (const ev of events) {
          if (ev.type === "ADDED" || ev.type === "MODIFIED" || ev.type === "DELETED") {
            cursor = await this.handle(
              { type: ev.type, object: ev.object, resource: target },
              cursor,
              signal,
            );
          } else if (ev.type === "BOOKMARK") {
            const rv = ev.object.metadata?.resourceVersion;
            if (rv && rv !== cursor.resourceVersion) {
              cursor = await this.deps.state.advance(this.keyId, cursor, rv, this.describe);
            }
          } else if (ev.type === "ERROR") {
            throw statusObjectError(ev.object);
          }
        }
      } catch (err) {
        if (err instanceof KubeApiError && err.gone)
          return this.resync(path, selectors, target, cursor, signal);
        // Our own session deadline ended the watch: resume, like a server-side timeout.
        if (session.aborted && !signal.aborted) return;
        throw err;
      }
    } finally {
      link.release();
    }
  }

  /** Publishes to every trigger that wants this event type, then records it as delivered. */
  private async handle(ev: KubeEvent, cursor: Cursor, signal: AbortSignal): Promise<Cursor> {
    await this.deliver(ev, signal);
    const m = ev.object.metadata ?? {};
    if (m.uid) {
      if (ev.type === "DELETED") await this.deps.state.removeObject(this.keyId, m.uid);
      else await this.deps.state.putObject(this.keyId, m.uid, recordOf(ev.object));
    }
    const rv = m.resourceVersion;
    return rv ? this.deps.state.advance(this.keyId, cursor, rv, this.describe) : cursor;
  }

  private async deliver(ev: KubeEvent, signal: AbortSignal): Promise<void> {
    for (const t of [...this.triggers.values()]) {
      if (!t.spec.events.includes(ev.type)) continue;
      await this.deps.publisher.publish(t, ev, signal);
    }
  }

  private async resync(
    path: string,
    selectors: Record<string, string | undefined>,
    target: ResolvedResource,
    cursor: Cursor,
    signal: AbortSignal,
  ): Promise<void> {
    this.set("syncing");
    this.deps.onResync();
    this.log.warn(
      { resourceVersion: cursor.resourceVersion },
      "the apiserver no longer has our resourceVersion (410 Gone); relisting and delivering the differences",
    );
    const list = await this.deps.client.list(path, selectors, signal);
    const stats = await resync({
      state: this.deps.state,
      keyId: this.keyId,
      list: list.items,
      resource: target,
      deliver: (ev) => this.deliver(ev, signal),
    });
    await this.deps.state.advance(this.keyId, cursor, list.resourceVersion, this.describe);
    this.log.info({ ...stats, resourceVersion: list.resourceVersion }, "resynced after 410 Gone");
  }

  private set(state: WatchState, reason?: string): void {
    this.status = reason === undefined ? { state } : { state, reason };
  }
}

/**
 * Answers that retrying soon will not change: a selector the apiserver rejects (400, 422), a
 * resource our RBAC does not let us read (401, 403), no usable Kubernetes configuration. Retried at the slow pace of unknown resources.
 */
function isRefusal(err: unknown): boolean {
  if (!(err instanceof KubeApiError)) return false;
  return err.reason === NOT_CONFIGURED || [400, 401, 403, 422].includes(err.status ?? 0);
}

function errMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
