import {
  Codecs,
  FizzError,
  Streams,
  type CallStatus,
  type Invocation,
  type Subjects,
} from "@fizz/events";
import {
  childOf,
  takeTrace,
  tracer,
  type Logger,
  type NatsConnection,
  type TraceContext,
} from "@fizz/kit";
import type { JetStreamClient, JetStreamManager, JsMsg } from "@nats-io/jetstream";
import type { BusConfig } from "../bus-config";
import type { BusMetrics } from "../bus-metrics";
import { isHopByHop, type FunctionLeases, type LeaseManager } from "../../front-door/index";
import type { CallbackSender } from "./callback";
import {
  CALL_ID_HEADER,
  deadLetterOf,
  settleMsg,
  keepWorking,
  publishAnswer,
  publishDeadLetter,
} from "./deliver";
import type { CallRequest } from "./invoke";
import type { BusLimiter } from "./limiter";
import { callUntilRun, failureOf, retryDelayMs, type Outcome } from "./outcome";
import { ensurePullConsumer, Puller } from "./puller";
import { FINAL_STATES, type CallStore } from "./status";
import { settle, stopController } from "./stopping";

/**
 * The invoker: every gateway pulls FIZZ_INVOCATIONS through one shared durable consumer
 * (`fizz-invokers`), so each invocation goes to one gateway at a time, and runs it on the same
 * leases as HTTP. At least once:
 * - an invocation is acknowledged only after its result was delivered (response/error subject,
 *   callback) and its final status written; a failed attempt is NAKed with exponential back-off;
 *   after `maxRetries` retries it becomes a dead letter on `dead.<ns>.<fn>`;
 * - an invoker that dies mid-call stops sending in-progress acks, so the invocation is redelivered
 *   after the ack wait; a redelivery whose status is already final is acknowledged without running
 *   again (the call completed and only the ack was lost).
 */
export const INVOKER_DURABLE = "fizz-invokers";

export interface InvokerOptions {
  nc: NatsConnection;
  js: JetStreamClient;
  jsm: JetStreamManager;
  subjects: Subjects;
  id: string;
  leases: LeaseManager;
  /** The function's lease state; null when no such function; undefined while routes load. */
  lookup: (namespace: string, name: string) => FunctionLeases | null | undefined;
  limiter: BusLimiter;
  store: CallStore;
  callbacks: CallbackSender;
  config: BusConfig;
  /** Largest response body a call may return (FIZZ_MAX_BODY_BYTES). */
  maxResponseBytes: number;
  metrics: BusMetrics;
  logger: Logger;
}

export class InvocationConsumer {
  private puller: Puller | undefined;
  private unlisten: (() => void) | undefined;
  /** Messages being worked on; `stopping` aborts their calls at stop. */
  private readonly active = new Set<JsMsg>();
  private readonly stopping = stopController();
  private readonly log: Logger;

  constructor(private readonly o: InvokerOptions) {
    this.log = o.logger.child({ component: "invoker" });
  }

  async start(): Promise<void> {
    await ensurePullConsumer(this.o.jsm, Streams.invocations, INVOKER_DURABLE, {
      ackWaitMs: this.o.config.ackWaitMs,
    });
    const puller = new Puller({
      js: this.o.js,
      stream: Streams.invocations,
      durable: INVOKER_DURABLE,
      window: () => this.o.limiter.free(),
      minBatch: () => Math.floor(this.o.limiter.maxTotal / 4),
      handle: (m) => void this.process(m),
      logger: this.log,
    });
    this.unlisten = this.o.limiter.onRelease(() => puller.wake());
    this.puller = puller;
    puller.start();
  }

  /** Stops pulling, lets calls finish for `drainMs`, then aborts the rest and hands them back. */
  async stop(drainMs: number): Promise<void> {
    this.unlisten?.();
    await this.puller?.stop();
    await settle(this.active, drainMs);
    this.stopping.abort();
    await settle(this.active, 2000);
  }

  private async process(m: JsMsg): Promise<void> {
    let inv: Invocation;
    try {
      inv = Codecs.invoke.decode(m.data).data;
    } catch (err) {
      // Nothing to run and no call to report on: drop it where an operator can see why.
      this.log.error({ err: (err as Error).message, seq: m.seq }, "malformed invocation dropped");
      this.o.metrics.invocation("unknown", "malformed");
      settleMsg(() => m.term());
      return;
    }
    const fl = this.o.lookup(inv.namespace, inv.function);
    if (
      fl === undefined ||
      (fl !== null && this.o.limiter.heldBy(fl) >= this.o.limiter.backlog(fl))
    ) {
      // Routes not loaded yet, or this function has its share running and as many waiting
      // here: back to the stream for later (or another gateway). Not an attempt (see run).
      settleMsg(() => m.nak(retryDelayMs(m.info.deliveryCount, 200, 5000)));
      this.o.metrics.invocation(inv.source, "deferred");
      return;
    }
    const ctl = this.stopping;
    this.active.add(m);
    const stopWorking = keepWorking(m, this.o.config.ackWaitMs);
    let slot: FunctionLeases | undefined;
    // The publisher's trace (async request, timer firing, watch event), from the message headers.
    const t = tracer();
    const received = takeTrace(m.headers);
    const span = t.recording
      ? t.startSpan("invoker.deliver", "consumer", received.trace, {
          "fizz.function": `${inv.namespace}/${inv.function}`,
          "fizz.call_id": inv.callId,
          "fizz.source": inv.source,
          "messaging.message.delivery_count": m.info.deliveryCount,
        })
      : undefined;
    const trace = span?.context ?? childOf(received.trace);
    try {
      if (fl === null) {
        const err = new FizzError(
          "NOT_FOUND",
          `function ${inv.function} not found in namespace ${inv.namespace}`,
        );
        await this.finish(m, inv, failureOf(err), 1, inv.createdAt);
        return;
      }
      await this.o.limiter.acquire(fl);
      slot = fl;
      await this.run(m, inv, fl, ctl.signal, trace);
    } catch (err) {
      span?.fail((err as Error).message);
      // Stopping (or the status store is unreachable): someone runs it again later.
      if (!ctl.signal.aborted)
        this.log.warn(
          {
            err: (err as Error).message,
            callId: inv.callId,
            traceId: trace.traceId,
            requestId: inv.headers["x-request-id"] ?? inv.callId,
          },
          "invocation handed back",
        );
      settleMsg(() => m.nak(ctl.signal.aborted ? 0 : 1000));
      this.o.metrics.invocation(inv.source, "handed_back");
    } finally {
      span?.end();
      stopWorking();
      this.active.delete(m);
      if (slot) this.o.limiter.release(slot);
    }
  }

  private async run(
    m: JsMsg,
    inv: Invocation,
    fl: FunctionLeases,
    signal: AbortSignal,
    trace: TraceContext,
  ): Promise<void> {
    const { store, metrics } = this.o;
    // Attempts live in the status: a delivery count would also count deferrals.
    const prior = m.info.deliveryCount > 1 ? await store.get(inv.callId) : undefined;
    if (prior && FINAL_STATES.has(prior.state)) {
      settleMsg(() => m.ack());
      metrics.invocation(inv.source, "duplicate");
      return;
    }
    const attempts = (prior?.attempts ?? 0) + 1;
    const createdAt = prior?.createdAt ?? inv.createdAt;
    const base = {
      callId: inv.callId,
      namespace: inv.namespace,
      function: inv.function,
      createdAt,
    };
    const running = store
      .put({ ...base, state: "running", attempts, updatedAt: Date.now() }, signal, 2)
      .catch((err: unknown) =>
        this.log.warn({ err: (err as Error).message }, "status not written"),
      );
    const outcome = await callUntilRun(
      this.o.leases,
      fl,
      this.request(inv, attempts, signal, trace),
      signal,
    );
    metrics.attempt(inv, inv.source, outcome.answer);
    await running;
    if (outcome.kind === "failed" && outcome.retry && attempts <= inv.maxRetries) {
      await store.put(
        {
          ...base,
          state: "queued",
          attempts,
          error: outcome.error.toWire(),
          updatedAt: Date.now(),
        },
        signal,
      );
      settleMsg(() =>
        m.nak(retryDelayMs(attempts, this.o.config.retryBaseMs, this.o.config.retryMaxMs)),
      );
      metrics.invocation(inv.source, "retried", inv);
      return;
    }
    await this.finish(m, inv, outcome, attempts, createdAt);
  }

  /** Delivers a final outcome (dead letter, subjects, callback), records it, then acks. */
  private async finish(
    m: JsMsg,
    inv: Invocation,
    outcome: Outcome,
    attempts: number,
    createdAt: number,
  ): Promise<void> {
    const { nc, js, store, metrics } = this.o;
    const a = outcome.answer;
    const extra = { [CALL_ID_HEADER]: inv.callId };
    if (outcome.kind === "failed") {
      const dl = deadLetterOf(inv, outcome.error, attempts, a.status, store.maxBodyBytes);
      await publishDeadLetter(js, this.o.subjects, this.o.id, dl);
    }
    const ok = outcome.kind === "answered" && a.status < 400;
    const subject = ok ? inv.responseSubject : inv.errorSubject;
    if (subject) publishAnswer(nc, subject, a, extra, this.log);
    let callbackError: FizzError | undefined;
    if (inv.callbackUrl) {
      const signal = this.stopping.signal;
      const cb = await this.o.callbacks.send(
        inv.callbackUrl,
        { ...a, callId: inv.callId, namespace: inv.namespace, function: inv.function },
        signal,
      );
      // Cut short by a stop: not delivered, so not final; the redelivery calls back.
      if (!cb.delivered && signal.aborted)
        throw new FizzError("UNAVAILABLE", "the gateway is stopping");
      if (!cb.delivered) callbackError = cb.error;
    }
    const status: CallStatus = {
      callId: inv.callId,
      namespace: inv.namespace,
      function: inv.function,
      state: ok ? "succeeded" : "failed",
      attempts,
      createdAt,
      updatedAt: Date.now(),
      ...store.result(a.status, a.headers, a.body),
      ...(outcome.kind === "failed" ? { error: outcome.error.toWire() } : {}),
      ...(callbackError ? { callbackError: callbackError.toWire() } : {}),
    };
    await store.put(status);
    settleMsg(() => m.ack());
    metrics.invocation(
      inv.source,
      outcome.kind === "failed" ? "dead_lettered" : ok ? "succeeded" : "failed",
      inv,
    );
    metrics.observe(inv.source, a.durationMs);
  }

  private request(
    inv: Invocation,
    attempt: number,
    signal: AbortSignal,
    trace: TraceContext,
  ): CallRequest {
    const h: string[] = [];
    let requestId: string | undefined;
    for (const [name, value] of Object.entries(inv.headers)) {
      const lower = name.toLowerCase();
      if (
        isHopByHop(lower) ||
        SKIPPED.has(lower) ||
        (lower.startsWith("x-fizz-") && !TRUSTED.has(lower))
      )
        continue;
      if (lower === "x-request-id") requestId = value;
      h.push(name, value);
    }
    h.push(
      "x-fizz-call-id",
      inv.callId,
      "x-call-id",
      inv.callId,
      "x-fizz-attempt",
      String(attempt),
      "x-fizz-source",
      inv.source,
      "x-fizz-function-name",
      inv.function,
      "x-fizz-function-namespace",
      inv.namespace,
    );
    if (inv.trigger !== undefined) h.push("x-fizz-trigger", inv.trigger);
    if (requestId === undefined) h.push("x-request-id", inv.callId);
    return {
      method: inv.method,
      path: inv.path,
      headers: h,
      body: inv.body.length > 0 ? Buffer.from(inv.body, "base64") : null,
      maxResponseBytes: this.o.maxResponseBytes,
      signal,
      trace,
    };
  }
}

/** Set by the gateway itself or framing the body (undici computes the length). */
const SKIPPED = new Set([
  "content-length",
  "host",
  "expect",
  "x-call-id",
  // The delivery's own trace context replaces these (CallRequest.trace).
  "traceparent",
  "tracestate",
]);
/**
 * X-Fizz-* headers an invocation may carry to the function. Only platform services publish on the
 * invocation subjects (the async endpoint strips a client's X-Fizz-* before publishing), but the
 * invoker sets identity headers itself, so it passes on only these informational ones.
 */
const TRUSTED = new Set(["x-fizz-timer", "x-fizz-scheduled-time"]);
