import type { NatsConnection, Subscription } from "@nats-io/transport-node";
import { request, type Agent } from "undici";

/**
 * The soak's traffic: an open loop (fixed rates, whatever the answers take) of warm calls, core
 * NATS trigger requests, JetStream trigger messages, async invocations and cold calls. Every
 * outcome that is not the expected answer is counted as an error of its kind, with the reason.
 */
export interface SoakRates {
  warmPerS: number;
  /** Core NATS request/reply through an mq trigger. */
  subjectPerS: number;
  /** Published to a JetStream trigger's subject; answers counted on its response subject. */
  jetstreamPerS: number;
  /** POST /async-function/…, then its status read until it succeeded. */
  asyncPerS: number;
  /** A new function created and invoked once every this many seconds… */
  coldEveryS: number;
  /** …and deleted this many seconds later. */
  coldKeepS: number;
}

export interface SoakTrafficOptions {
  gatewayUrl: string;
  nc: NatsConnection;
  agent: Agent;
  rates: SoakRates;
  warmFn: string;
  createCold: (name: string) => Promise<unknown>;
  deleteCold: (name: string) => Promise<unknown>;
}

/** Past this many requests in flight a tick's requests are not sent (counted as `backlog`). */
const MAX_IN_FLIGHT = 1000;
const TICK_MS = 100;
/** An async call not succeeded after this long counts as lost. */
const ASYNC_DEADLINE_MS = 60_000;
const HELLO = "Hello, world!\n";
const BODY = new TextEncoder().encode('{"soak":true}');

export class SoakTraffic {
  readonly requests: Record<string, number> = {};
  readonly errors: Record<string, number> = {};
  private inFlight = 0;
  private credit = { warm: 0, subject: 0, jetstream: 0, async: 0 };
  private ticker: NodeJS.Timeout | undefined;
  private checker: NodeJS.Timeout | undefined;
  private coldTimer: NodeJS.Timeout | undefined;
  private readonly pendingAsync: { id: string; at: number; checking: boolean }[] = [];
  private readonly cold: { name: string; at: number }[] = [];
  private coldSeq = 0;
  private readonly tag = Date.now().toString(36);
  private jsPublished = 0;
  private jsAnswered = 0;
  private jsSub: Subscription | undefined;
  private stopping:
    Promise<{ requests: Record<string, number>; errors: Record<string, number> }> | undefined;
  private readonly tasks = new Set<Promise<void>>();

  constructor(private readonly o: SoakTrafficOptions) {}

  async start(): Promise<void> {
    this.jsSub = this.o.nc.subscribe("soak-done.js", {
      callback: () => {
        this.jsAnswered++;
      },
    });
    await this.o.nc.flush();
    this.ticker = setInterval(() => this.tick(), TICK_MS);
    this.checker = setInterval(() => this.track(this.checkAsync()), 1000);
    this.coldTimer = setInterval(() => this.track(this.coldCall()), this.o.rates.coldEveryS * 1000);
  }

  /** Stops sending, waits for what is in flight (async calls and JetStream answers up to 30 s). */
  stop(): Promise<{ requests: Record<string, number>; errors: Record<string, number> }> {
    this.stopping ??= (async () => {
      clearInterval(this.ticker);
      clearInterval(this.coldTimer);
      await Promise.allSettled([...this.tasks]);
      const until = performance.now() + 30_000;
      while (
        performance.now() < until &&
        (this.pendingAsync.length > 0 || this.jsAnswered < this.jsPublished)
      ) {
        await this.checkAsync(true);
        await new Promise((r) => setTimeout(r, 500));
      }
      clearInterval(this.checker);
      await Promise.allSettled([...this.tasks]);
      this.jsSub?.unsubscribe();
      if (this.pendingAsync.length > 0) this.fail("async", "not_done", this.pendingAsync.length);
      if (this.jsAnswered < this.jsPublished)
        this.fail("jetstream", "lost", this.jsPublished - this.jsAnswered);
      for (const c of this.cold.splice(0))
        await this.o.deleteCold(c.name).catch(() => this.fail("cold", "delete"));
      return { requests: this.requests, errors: this.errors };
    })();
    return this.stopping;
  }

  private track(p: Promise<void>): void {
    this.tasks.add(p);
    void p.finally(() => this.tasks.delete(p));
  }

  private count(kind: string): void {
    this.requests[kind] = (this.requests[kind] ?? 0) + 1;
  }

  private fail(kind: string, why: string, n = 1): void {
    const k = `${kind}_${why}`;
    this.errors[k] = (this.errors[k] ?? 0) + n;
  }

  private tick(): void {
    const r = this.o.rates;
    const c = this.credit;
    c.warm += (r.warmPerS * TICK_MS) / 1000;
    c.subject += (r.subjectPerS * TICK_MS) / 1000;
    c.jetstream += (r.jetstreamPerS * TICK_MS) / 1000;
    c.async += (r.asyncPerS * TICK_MS) / 1000;
    for (; c.warm >= 1; c.warm--) this.send("warm", () => this.warmCall());
    for (; c.subject >= 1; c.subject--) this.send("subject", () => this.subjectCall());
    for (; c.async >= 1; c.async--) this.send("async", () => this.asyncCall());
    for (; c.jetstream >= 1; c.jetstream--) {
      this.count("jetstream");
      this.o.nc.publish("soak.js", BODY);
      this.jsPublished++;
    }
  }

  private send(kind: string, call: () => Promise<void>): void {
    this.count(kind);
    if (this.inFlight >= MAX_IN_FLIGHT) return this.fail(kind, "backlog");
    this.inFlight++;
    this.track(
      call()
        .catch((err: unknown) => this.fail(kind, reason(err)))
        .finally(() => this.inFlight--),
    );
  }

  private async get(path: string, method: "GET" | "POST" = "GET") {
    const res = await request(`${this.o.gatewayUrl}${path}`, {
      method,
      dispatcher: this.o.agent,
      headersTimeout: 30_000,
      bodyTimeout: 30_000,
      ...(method === "POST" ? { body: BODY, headers: { "content-type": "application/json" } } : {}),
    });
    return { status: res.statusCode, headers: res.headers, text: await res.body.text() };
  }

  private async warmCall(): Promise<void> {
    const r = await this.get(`/function/${this.o.warmFn}`);
    if (r.status !== 200 || r.text !== HELLO) this.fail("warm", `http_${r.status}`);
  }

  private async subjectCall(): Promise<void> {
    const m = await this.o.nc.request("soak.core", BODY, { timeout: 30_000 });
    if (m.string() !== HELLO) this.fail("subject", "wrong_answer");
  }

  private async asyncCall(): Promise<void> {
    const r = await this.get(`/async-function/${this.o.warmFn}`, "POST");
    const id = r.headers["x-call-id"];
    if (r.status !== 202 || typeof id !== "string") return this.fail("async", `http_${r.status}`);
    this.pendingAsync.push({ id, at: performance.now(), checking: false });
  }

  /** Reads the status of async calls at least 1 s old (all of them when `all`). */
  private async checkAsync(all = false): Promise<void> {
    const now = performance.now();
    const due = this.pendingAsync.filter((c) => !c.checking && (all || now - c.at >= 1000));
    await Promise.all(
      due.map(async (c) => {
        c.checking = true;
        let done: "ok" | "failed" | "late" | undefined;
        try {
          const r = await this.get(`/async-function/${this.o.warmFn}/${c.id}`);
          const state = r.status === 200 ? (JSON.parse(r.text) as { state: string }).state : "";
          if (state === "succeeded") done = "ok";
          else if (state === "failed") done = "failed";
        } catch {
          // asked again next time
        }
        if (!done && performance.now() - c.at > ASYNC_DEADLINE_MS) done = "late";
        c.checking = false;
        if (!done) return;
        const i = this.pendingAsync.indexOf(c);
        if (i >= 0) this.pendingAsync.splice(i, 1);
        if (done !== "ok") this.fail("async", done);
      }),
    );
  }

  /** Creates and invokes one new function; deletes those older than coldKeepS. */
  private async coldCall(): Promise<void> {
    const now = performance.now();
    while (this.cold.length > 0 && now - this.cold[0]!.at > this.o.rates.coldKeepS * 1000) {
      const old = this.cold.shift()!;
      this.count("cold_delete");
      await this.o.deleteCold(old.name).catch(() => this.fail("cold_delete", "api"));
    }
    const name = `soak-cold-${this.tag}-${this.coldSeq++}`;
    this.count("cold");
    try {
      await this.o.createCold(name);
    } catch {
      return this.fail("cold", "create");
    }
    this.cold.push({ name, at: performance.now() });
    try {
      const r = await this.get(`/function/${name}`);
      if (r.status !== 200 || r.text !== HELLO) this.fail("cold", `http_${r.status}`);
    } catch (err) {
      this.fail("cold", reason(err));
    }
  }
}

function reason(err: unknown): string {
  const e = err as { code?: unknown; message?: unknown };
  if (typeof e.code === "string" && e.code) return e.code;
  if (typeof e.message === "string" && /timeout/i.test(e.message)) return "timeout";
  return "client_error";
}
