import type { Readable } from "node:stream";
import { sleep } from "@fizz/kit";
import { instanceRequest, type InstanceAgent } from "./instance-http";

/**
 * Polls GET /healthz until it answers 200. The first probes come fast (a bare node runtime is up
 * in tens of milliseconds) and slow down to 100 ms. Rejects early when `exited` resolves; stops
 * quietly (never resolving) once `stop` aborts. The timeout counts from `since` (default: now).
 */
export async function waitHealthy(
  address: string,
  agent: InstanceAgent,
  opts: { timeoutMs: number; exited: Promise<void>; stop?: AbortSignal; since?: number },
): Promise<void> {
  let gone = false;
  void opts.exited.then(() => (gone = true));
  const deadline = (opts.since ?? Date.now()) + opts.timeoutMs;
  let delay = 5;
  let last = "no answer";
  for (;;) {
    if (opts.stop?.aborted) return new Promise<void>(() => undefined);
    if (gone) throw new Error("exited before answering /healthz");
    const left = deadline - Date.now();
    if (left <= 0)
      throw new Error(`no healthy answer on /healthz within ${opts.timeoutMs} ms (${last})`);
    try {
      const { status } = await instanceRequest(agent, address, "/healthz", {
        method: "GET",
        timeoutMs: Math.min(2000, left),
        maxReplyBytes: 64 * 1024,
      });
      if (status === 200) return;
      last = `status ${status}`;
    } catch (err) {
      last = (err as Error).message;
    }
    await Promise.race([sleep(Math.min(delay, Math.max(1, deadline - Date.now()))), opts.exited]);
    delay = Math.min(delay * 2, 100);
  }
}

/** The one line a runtime writes on its readiness pipe once it is listening. */
export const READY_LINE = "ready\n";

/**
 * How long an announcing runtime has before the /healthz polling starts anyway: a runtime copy
 * that keeps the pipe open without writing (an older loader) still comes up, only later.
 */
export const ANNOUNCE_GRACE_MS = 300;

/**
 * Resolves once the instance is ready: announced on `announce`, the read end of a pipe only this
 * child was given (so no other instance, and no network peer, can write to it), or else answering
 * GET /healthz. Polling starts at once when the pipe closes or carries anything but READY_LINE,
 * and after ANNOUNCE_GRACE_MS regardless; without a pipe it is the only way. The pipe is closed
 * once the wait is over: anything written to it later goes nowhere.
 */
export async function waitReady(
  address: string,
  agent: InstanceAgent,
  opts: {
    timeoutMs: number;
    exited: Promise<void>;
    announce: Readable | undefined;
    /** ANNOUNCE_GRACE_MS unless set (tests); never past the timeout. */
    graceMs?: number;
  },
): Promise<"announced" | "polled"> {
  const pipe = opts.announce;
  if (!pipe) {
    await waitHealthy(address, agent, opts);
    return "polled";
  }
  const since = Date.now();
  const stop = new AbortController();
  const announced = readAnnouncement(pipe);
  const pollFrom = Promise.race([
    announced.then((ok) => (ok ? new Promise<void>(() => undefined) : undefined)),
    // Cleared once the wait is over: a refill's 3 s grace must not outlive its announcement.
    sleep(Math.min(opts.graceMs ?? ANNOUNCE_GRACE_MS, opts.timeoutMs), stop.signal),
  ]);
  const polled = pollFrom.then(() =>
    waitHealthy(address, agent, { ...opts, stop: stop.signal, since }).then(
      () => "polled" as const,
    ),
  );
  try {
    return await Promise.race([
      announced.then((ok) => (ok ? "announced" : new Promise<never>(() => undefined))),
      polled,
    ]);
  } finally {
    stop.abort();
    pipe.destroy();
  }
}

/**
 * True once the pipe's first line is READY_LINE; false when it ends, fails or says anything else.
 * Either way the pipe is closed then: nothing more is read from it, or buffered.
 */
function readAnnouncement(pipe: Readable): Promise<boolean> {
  return new Promise((resolve) => {
    let got = "";
    const settle = (ok: boolean) => {
      // After the rest of this poll phase: what the runtime printed before announcing (its
      // "listening" line) is in the stdout/stderr pipes, usually readable in the same epoll batch;
      // read now, it is still the warm instance's, not the function's it is about to be given.
      setImmediate(resolve, ok);
      pipe.destroy();
    };
    pipe.on("data", (chunk: Buffer) => {
      got += chunk.toString("latin1");
      if (got.length < READY_LINE.length && READY_LINE.startsWith(got)) return;
      settle(got.startsWith(READY_LINE));
    });
    pipe.once("end", () => settle(false));
    pipe.once("close", () => settle(false));
    // A failed pipe is no announcement; polling decides.
    pipe.on("error", () => settle(false));
  });
}
