import { request as httpRequest, type ClientRequest, type IncomingMessage } from "node:http";
import { request, type RequestOptions } from "node:https";
import { backoffMs, type Logger } from "@fizz/kit";
import type { KubeConfig } from "@kubernetes/client-node";
import type { BackendInstance, OutputStream } from "./backend";
import { LogCursor, splitTimestamp } from "./kube-log-cursor";

/** Longest line passed on; the rest of a longer one is dropped (the bus cuts at 16 KiB anyway). */
const MAX_LINE = 64 * 1024;
/** Chunks (≤ 64 KiB each) read ahead of the lines handed on, per follow. */
const MAX_QUEUED_CHUNKS = 4;

/** What the follower needs to know of a pod, from the informer's cache. */
export type PodLogState = "running" | "finished" | "gone";

export interface PodLogsOptions {
  kubeConfig: KubeConfig;
  namespace: string;
  container: string;
  state(pod: string): PodLogState;
  /** `writtenAt`: the line's timestamp (epoch ms), when it had one. */
  onLine(instance: BackendInstance, stream: OutputStream, line: string, writtenAt?: number): void;
  logger: Logger;
}

/** Which streams one follow request reads (PodLogsQuerySplitStreams), or both as "stdout". */
type Selector = "Stdout" | "Stderr" | "All";

/** One answer of the pods/log endpoint: the stream ended (true), or how it failed. */
type ReadEnd = { ok: true } | { ok: false; status: number | undefined; message: string };

/**
 * Follows the logs of the poolkeeper's pods through the API server (GET pods/log?follow=true),
 * which proxies to the node's kubelet API: one follow per stream per pod (two when the cluster
 * has PodLogsQuerySplitStreams, which the first request finds out; else one, and every line is
 * tagged "stdout", as the combined log does not say which stream a line came from).
 *
 * A follow starts at the pod's first line, so nothing printed before the instance was ready is
 * lost; it ends by itself when the container has exited and everything is read, so a crash's
 * last lines arrive before the pod is reported gone (`drained`). A broken stream is resumed with
 * sinceTime, and the cursor (kube-log-cursor.ts) drops the lines it repeats. Memory per pod and
 * stream: one line buffer (≤ 64 KiB) and at most MAX_QUEUED_CHUNKS read chunks; one chunk's lines
 * are handed on per turn of the event loop.
 */
export class PodLogs {
  private readonly followers = new Map<string, Follower[]>();
  /** undefined until a request tells; false: the API server refuses `stream` (gate off). */
  private split: boolean | undefined;
  private readonly log: Logger;

  constructor(private readonly opts: PodLogsOptions) {
    this.log = opts.logger.child({ component: "pod-logs" });
  }

  /**
   * Follows a pod's container; `since` (RFC 3339) skips what was written before (adoption);
   * nothing is read before `ready` settles (an adopted pod's secrets are being read for masking).
   */
  follow(instance: BackendInstance, since?: string, ready?: Promise<unknown>): void {
    if (this.followers.has(instance.id)) return;
    const list: Follower[] = [];
    this.followers.set(instance.id, list);
    const start = (selector: Selector, stream: OutputStream) => {
      const f = new Follower(this, instance, selector, stream, since, ready);
      list.push(f);
      void f.run().finally(() => {
        if (list.every((x) => x.done)) this.followers.delete(instance.id);
      });
    };
    if (this.split === false) return start("All", "stdout");
    // The first stream asks with `stream=Stdout`; its answer decides whether a second follow
    // reads stderr, or the one follow (All) carries both.
    const first = new Follower(this, instance, "Stdout", "stdout", since, ready, (supported) => {
      this.split = supported;
      if (supported) start("Stderr", "stderr");
      else {
        this.log.info("the API server does not split log streams: stderr is read as stdout");
        start("All", "stdout");
      }
    });
    list.push(first);
    void first.run().finally(() => {
      if (list.every((x) => x.done)) this.followers.delete(instance.id);
    });
  }

  /** Resolves when every follow of the pod has ended (a stderr follow started late too), or after `ms`. */
  async drained(pod: string, ms: number): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    let timedOut = false;
    const deadline = new Promise<void>(
      (r) => (timer = setTimeout(() => r((timedOut = true) && undefined), ms)),
    );
    try {
      for (;;) {
        const pending = (this.followers.get(pod) ?? []).filter((f) => !f.done);
        if (pending.length === 0 || timedOut) return;
        await Promise.race([Promise.all(pending.map((f) => f.finished)), deadline]);
      }
    } finally {
      clearTimeout(timer);
    }
  }

  /** Stops following a pod (it is gone). */
  stop(pod: string): void {
    for (const f of this.followers.get(pod) ?? []) f.stop();
    this.followers.delete(pod);
  }

  close(): void {
    for (const pod of [...this.followers.keys()]) this.stop(pod);
  }

  /** @internal for Follower */
  get options(): PodLogsOptions {
    return this.opts;
  }

  /** @internal for Follower */
  get logger(): Logger {
    return this.log;
  }
}

class Follower {
  done = false;
  readonly finished: Promise<void>;
  private markFinished!: () => void;
  private readonly cursor = new LogCursor();
  private req: ClientRequest | undefined;
  private stopped = false;
  private wake: (() => void) | undefined;
  /** Lines passed on so far: a broken read that brought new lines resets the back-off. */
  private passed = 0;

  constructor(
    private readonly owner: PodLogs,
    private readonly instance: BackendInstance,
    private selector: Selector,
    private readonly stream: OutputStream,
    since: string | undefined,
    private readonly ready: Promise<unknown> | undefined,
    /** Told once whether the API server took `stream=` (only the probing follower has one). */
    private onSupport?: (supported: boolean) => void,
  ) {
    this.finished = new Promise((r) => (this.markFinished = r));
    if (since !== undefined) this.cursor.startAt(since);
  }

  async run(): Promise<void> {
    const state = (pod: string) => this.owner.options.state(pod);
    let failures = 0;
    try {
      if (this.ready) await this.ready.catch(() => undefined);
      while (!this.stopped) {
        const before = this.passed;
        const end = await this.read();
        if (this.stopped) return;
        if (
          !end.ok &&
          this.onSupport &&
          (end.status === 400 || end.status === 422) &&
          /\bstream\b/.test(end.message)
        ) {
          // PodLogsQuerySplitStreams is off: "stream: Forbidden: may not be specified".
          this.selector = "All";
          this.onSupport(false);
          this.onSupport = undefined;
          this.done = true;
          return;
        }
        const s = state(this.instance.id);
        // Ended cleanly with the container done: everything has been read.
        if (s === "gone" || (end.ok ? s === "finished" : end.status === 404)) return;
        if (!end.ok) {
          failures = this.passed > before ? 1 : failures + 1;
          this.owner.logger.debug(
            { pod: this.instance.id, stream: this.selector, err: end.message, failures },
            "pod log stream broke; resuming",
          );
        } else failures = 0;
        await this.sleep(backoffMs(failures, 250, 5_000));
        this.cursor.resume();
      }
    } finally {
      this.done = true;
      this.markFinished();
    }
  }

  stop(): void {
    this.stopped = true;
    this.req?.destroy();
    this.wake?.();
  }

  /** One GET pods/log?follow=true, read to its end. */
  private async read(): Promise<ReadEnd> {
    const { kubeConfig, namespace, container } = this.owner.options;
    const server = kubeConfig.getCurrentCluster()?.server;
    if (!server) return { ok: false, status: undefined, message: "no current cluster" };
    const url = new URL(`${server}/api/v1/namespaces/${namespace}/pods/${this.instance.id}/log`);
    url.searchParams.set("container", container);
    url.searchParams.set("follow", "true");
    url.searchParams.set("timestamps", "true");
    if (this.selector !== "All") url.searchParams.set("stream", this.selector);
    const since = this.cursor.sinceTime();
    if (since !== undefined) url.searchParams.set("sinceTime", since);
    const opts: RequestOptions = { method: "GET" };
    try {
      await kubeConfig.applyToHTTPSOptions(opts);
    } catch (err) {
      return broken(err instanceof Error ? err.message : String(err));
    }
    return new Promise<ReadEnd>((resolve) => {
      // Plain HTTP only for an API server a kubeconfig names so (a local proxy, the unit tests).
      const send = url.protocol === "http:" ? httpRequest : request;
      const req = send(url, opts, (res) => this.consume(res, resolve));
      this.req = req;
      req.on("error", (err) => resolve({ ok: false, status: undefined, message: err.message }));
      req.end();
    });
  }

  private consume(res: IncomingMessage, resolve: (e: ReadEnd) => void): void {
    if (res.statusCode !== 200) {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (d: string) => (body = (body + d).slice(0, 4096)));
      res.on("end", () => resolve({ ok: false, status: res.statusCode, message: message(body) }));
      res.on("error", (err) =>
        resolve({ ok: false, status: res.statusCode, message: err.message }),
      );
      return;
    }
    // The API server took the request as asked: `stream=` is supported.
    this.onSupport?.(true);
    this.onSupport = undefined;
    let buf = "";
    let cut = false;
    const take = (chunk: string) => {
      buf += chunk;
      let nl: number;
      while ((nl = buf.indexOf("\n")) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        if (cut) cut = false;
        else this.line(line);
      }
      if (buf.length > MAX_LINE) {
        // An endless line: pass on its start once, drop the rest up to the next newline.
        if (!cut) this.line(buf.slice(0, MAX_LINE));
        cut = true;
        buf = "";
      }
    };
    // One chunk per turn of the event loop: a flooding pod's follow took up to ~350 ms of the
    // loop at a time (several chunks per read) from other pods and everything else. Chunks wait
    // in a short queue; when it is full the response is paused and the connection pushes back to
    // the node. What is queued is handed on also when the stream breaks (its end comes after).
    const queue: string[] = [];
    let scheduled = false;
    let ended: ReadEnd | undefined;
    const pump = () => {
      const chunk = queue.shift();
      if (chunk !== undefined && !this.stopped) take(chunk);
      if (queue.length < MAX_QUEUED_CHUNKS && res.isPaused() && !ended) res.resume();
      if (queue.length > 0) return void setImmediate(pump);
      scheduled = false;
      if (ended) resolve(ended);
    };
    const finish = (e: ReadEnd) => {
      if (ended) return;
      ended = e;
      if (!scheduled) resolve(e);
    };
    res.setEncoding("utf8");
    res.on("data", (chunk: string) => {
      queue.push(chunk);
      if (queue.length >= MAX_QUEUED_CHUNKS) res.pause();
      if (scheduled) return;
      scheduled = true;
      setImmediate(pump);
    });
    // A stream cut short ends without a final newline: the piece is left for the resumed read.
    res.on("end", () => finish(res.complete ? { ok: true } : broken("stream ended early")));
    res.on("aborted", () => finish(broken("stream aborted")));
    res.on("error", (err) => finish(broken(err.message)));
  }

  private line(raw: string): void {
    const { ns, text } = splitTimestamp(raw);
    const line = this.cursor.accept(ns, text);
    if (line === undefined) return;
    this.passed++;
    // Lines arrive late (the follow is a stream through the API server): what a pod printed while
    // warm can come in after it was assigned; its timestamp says whose it is.
    try {
      if (ns === undefined) this.owner.options.onLine(this.instance, this.stream, line);
      else this.owner.options.onLine(this.instance, this.stream, line, Number(ns / 1_000_000n));
    } catch (err) {
      this.owner.logger.error({ err }, "log line listener failed");
    }
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const t = setTimeout(done, ms);
      function done() {
        clearTimeout(t);
        resolve();
      }
      this.wake = done;
    });
  }
}

function broken(message: string): ReadEnd {
  return { ok: false, status: undefined, message };
}

/** The Status message of an error answer, or its start. */
function message(body: string): string {
  try {
    const s = JSON.parse(body) as { message?: unknown };
    if (typeof s.message === "string") return s.message;
  } catch {
    // not a Status object
  }
  return body.slice(0, 300);
}
