import { backoffMs, retryUntil, RetryStopped, type Logger } from "@fizz/kit";
import {
  makeInformer,
  type CoreV1Api,
  type Informer,
  type KubeConfig,
  type ObjectCache,
  type V1Pod,
} from "@kubernetes/client-node";
import { POD_SELECTOR } from "./kube-pods";

export interface PodWatchOptions {
  kubeConfig: KubeConfig;
  core: CoreV1Api;
  namespace: string;
  logger: Logger;
  /** An added or changed pod (a relist after a reconnect reports every pod again). */
  onChange(pod: V1Pod): void;
  onDelete(pod: V1Pod): void;
}

/**
 * The informer on the poolkeeper's pods (label fizz.dev/managed-by=poolkeeper, in its namespace):
 * the one source of truth about which instances exist and what state they are in.
 *
 * client-node's informer stops for good after a list or watch error; this restarts it with
 * back-off. A restart resumes from the last resourceVersion, or relists after 410 Gone, and the
 * relist reports pods deleted meanwhile as deletions, so no event is lost across a disconnect.
 */
export class PodWatch {
  private readonly informer: Informer<V1Pod> & ObjectCache<V1Pod>;
  private readonly log: Logger;
  private stopped = false;
  private listedOnce = false;
  private isConnected = false;
  private failedThisRun = false;
  private attempt = 0;
  private lastError: Error | undefined;
  private retry: NodeJS.Timeout | undefined;

  constructor(private readonly opts: PodWatchOptions) {
    this.log = opts.logger.child({ component: "pod-watch" });
    const path = `/api/v1/namespaces/${opts.namespace}/pods`;
    const list = async () => {
      const l = await opts.core.listNamespacedPod({
        namespace: opts.namespace,
        labelSelector: POD_SELECTOR,
      });
      this.listedOnce = true;
      return l;
    };
    this.informer = makeInformer(opts.kubeConfig, path, list, POD_SELECTOR);
    this.informer.on("add", (p) => opts.onChange(p));
    this.informer.on("update", (p) => opts.onChange(p));
    this.informer.on("delete", (p) => opts.onDelete(p));
    this.informer.on("error", (err: unknown) => this.failed(err));
  }

  /**
   * Lists and starts watching; resolves once the first listing has been applied (every existing
   * pod reported through onChange), retrying until then. Resolves early when `signal` aborts.
   */
  async start(signal: AbortSignal): Promise<void> {
    try {
      await retryUntil(
        async () => {
          if (this.stopped) return;
          await this.run();
          if (!this.listedOnce && !this.stopped)
            throw this.lastError ?? new Error("pod listing not applied");
        },
        {
          baseMs: 250,
          maxMs: 5_000,
          signal,
          onRetry: ({ err, waitMs }) => this.warnFailed(err, waitMs),
        },
      );
    } catch (err) {
      if (!(err instanceof RetryStopped)) throw err;
    }
  }

  get(name: string): V1Pod | undefined {
    return this.informer.get(name, this.opts.namespace);
  }

  list(): readonly V1Pod[] {
    return this.informer.list(this.opts.namespace);
  }

  connected(): boolean {
    return this.isConnected;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.isConnected = false;
    clearTimeout(this.retry);
    await this.informer.stop();
  }

  /**
   * One informer start. It resolves once the watch is open or an error was reported; the list
   * inside it applies every item synchronously before the watch opens.
   */
  private async run(): Promise<void> {
    if (this.stopped) return;
    this.failedThisRun = false;
    this.lastError = undefined;
    try {
      await this.informer.start();
    } catch (err) {
      this.failed(err);
    }
    if (!this.failedThisRun && !this.stopped) {
      if (!this.isConnected && this.attempt > 0) this.log.info("pod watch connected again");
      this.isConnected = true;
      this.attempt = 0;
    }
  }

  private failed(err: unknown): void {
    this.failedThisRun = true;
    this.isConnected = false;
    this.lastError = err instanceof Error ? err : new Error(String(err));
    if (this.stopped) return;
    // Before the first listing start() drives the retries itself, and logs them.
    if (!this.listedOnce) {
      this.attempt++;
      return;
    }
    // After it, a restart is scheduled here: the informer's error arrives outside any caller.
    const wait = backoffMs(this.attempt++, 250, 10_000);
    this.warnFailed(err, wait);
    clearTimeout(this.retry);
    this.retry = setTimeout(() => void this.run(), wait);
    this.retry.unref();
  }

  private warnFailed(err: unknown, retryInMs: number): void {
    this.log.warn(
      { err: err instanceof Error ? err.message : String(err), retryInMs },
      "pod watch failed; restarting",
    );
  }
}
