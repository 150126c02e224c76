import { FizzError, type Invocation, type MessageQueueTrigger } from "@fizz/events";
import {
  RetentionPolicy,
  StorageType,
  type JetStreamManager,
  type JsMsg,
} from "@nats-io/jetstream";
import {
  deadLetterOf,
  keepWorking,
  publishAnswer,
  publishDeadLetter,
  CALL_ID_HEADER,
  settleMsg,
} from "../invoker/deliver";
import { callUntilRun, failureOf, retryDelayMs, type Outcome } from "../invoker/outcome";
import { ensurePullConsumer, Puller } from "../invoker/puller";
import { storedBodyLimit } from "../invoker/status";
import { settle, stopController } from "../invoker/stopping";
import type { FunctionLeases } from "../../front-door/index";
import { deliverySpan, messageRequest, mqtName, type MqtDeps, type MqtRunner } from "./common";

/**
 * A message-queue trigger with a stream: at least once through JetStream. The stream is created
 * if missing (limits retention, file storage, 7 days) or extended to capture the subject; every
 * gateway pulls through one durable consumer per trigger (`fizz-mqt-<ns>-<name>`, filtered on the
 * subject, starting with messages published after its creation). A message is acked after the
 * function answered below 500 and the answer went to the response (or, for a 4xx, error)
 * subject; a failure is NAKed with exponential back-off; after `maxRetries` retries it becomes a
 * dead letter (`dead.<ns>.<fn>`, and the error subject), then is acked. Calls that cannot run for
 * lack of capacity wait, holding their message with in-progress acks, and are not attempts.
 *
 * Each gateway fetches only what it can run now: min(free bus slots, the function's free share).
 */
const STREAM_MAX_AGE_MS = 7 * 24 * 3600 * 1000;

export async function startJetStreamTrigger(
  d: MqtDeps,
  t: MessageQueueTrigger,
): Promise<MqtRunner> {
  const bus = d.jetstream();
  if (!bus) throw new FizzError("UNAVAILABLE", "JetStream is not reachable yet");
  const { namespace, name } = t.metadata;
  const s = t.spec;
  const stream = s.stream as string;
  const durable = mqtName(t);
  const log = d.logger.child({ component: "mqt", trigger: `${namespace}/${name}` });
  await ensureStreamCaptures(bus.jsm, stream, s.subject);
  await ensurePullConsumer(bus.jsm, stream, durable, {
    ackWaitMs: d.config.ackWaitMs,
    filterSubject: s.subject,
    deliverNew: true,
  });

  const active = new Set<JsMsg>();
  const stopping = stopController();
  const fn = () => d.lookup(namespace, s.function);

  const finish = async (m: JsMsg, outcome: Outcome, attempts: number, callId: string) => {
    const a = outcome.answer;
    if (outcome.kind === "failed") {
      const inv = invocationOf(t, m, callId);
      const max = storedBodyLimit(d.config.resultMaxBytes, d.nc.info?.max_payload ?? 1024 * 1024);
      const dl = deadLetterOf(inv, outcome.error, attempts, a.status, max);
      await publishDeadLetter(bus.js, d.subjects, d.id, dl);
    }
    const ok = outcome.kind === "answered" && a.status < 400;
    const subject = ok ? s.responseSubject : s.errorSubject;
    if (subject) publishAnswer(d.nc, subject, a, { [CALL_ID_HEADER]: callId }, log);
    settleMsg(() => m.ack());
    d.metrics.invocation(
      "mqt-jetstream",
      outcome.kind === "failed" ? "dead_lettered" : ok ? "succeeded" : "failed",
      { namespace, function: s.function },
    );
    d.metrics.observe("mqt-jetstream", a.durationMs);
  };

  const process = async (m: JsMsg): Promise<void> => {
    const fl = fn();
    if (fl === undefined) {
      settleMsg(() => m.nak(1000)); // routes still loading
      return;
    }
    const ctl = stopping;
    active.add(m);
    const stopWorking = keepWorking(m, d.config.ackWaitMs);
    const callId = `${stream}-${m.seq}`;
    // This consumer only fetches what can run, so every delivery is an attempt.
    const attempts = m.info.deliveryCount;
    let slot: FunctionLeases | undefined;
    const { span, trace } = deliverySpan(t, m.headers, m.subject);
    try {
      if (fl === null) {
        const err = new FizzError(
          "NOT_FOUND",
          `function ${s.function} not found in namespace ${namespace}`,
        );
        await finish(m, failureOf(err), attempts, callId);
        return;
      }
      await d.limiter.acquire(fl);
      slot = fl;
      const req = messageRequest(
        t,
        m.subject,
        m.headers,
        m.data,
        callId,
        d.maxResponseBytes,
        ctl.signal,
        trace,
      );
      const outcome = await callUntilRun(d.leases, fl, req, ctl.signal);
      d.metrics.attempt({ namespace, function: s.function }, "mqt", outcome.answer);
      if (outcome.kind === "failed" && outcome.retry && attempts <= s.maxRetries) {
        settleMsg(() => m.nak(retryDelayMs(attempts, d.config.retryBaseMs, d.config.retryMaxMs)));
        d.metrics.invocation("mqt-jetstream", "retried", { namespace, function: s.function });
        return;
      }
      await finish(m, outcome, attempts, callId);
    } catch (err) {
      span?.fail((err as Error).message);
      if (!ctl.signal.aborted)
        log.warn(
          { err: (err as Error).message, callId, traceId: trace.traceId, requestId: callId },
          "message handed back",
        );
      settleMsg(() => m.nak(ctl.signal.aborted ? 0 : 1000));
      d.metrics.invocation("mqt-jetstream", "handed_back");
    } finally {
      span?.end();
      stopWorking();
      active.delete(m);
      if (slot) d.limiter.release(slot);
    }
  };

  const puller = new Puller({
    js: bus.js,
    stream,
    durable,
    window: () => {
      const fl = fn();
      if (fl === undefined) return 0;
      // Unknown function: let the messages through to be dead-lettered.
      return fl === null
        ? Math.min(d.limiter.free(), 16)
        : Math.min(d.limiter.free(), d.limiter.backlog(fl) - d.limiter.heldBy(fl));
    },
    minBatch: () => {
      const fl = fn();
      return fl ? Math.floor(Math.min(d.limiter.maxTotal, d.limiter.limit(fl)) / 4) : 1;
    },
    handle: (m) => void process(m),
    logger: log,
  });
  const unlisten = d.limiter.onRelease(() => puller.wake());
  puller.start();
  log.info({ stream, subject: s.subject, consumer: durable }, "consuming (JetStream)");

  return {
    async stop(drainMs) {
      unlisten();
      await puller.stop();
      await settle(active, drainMs);
      stopping.abort();
      await settle(active, 1000);
    },
  };
}

/** Deletes a trigger's durable consumer (the trigger is gone); a missing one is fine. */
export async function removeTriggerConsumer(
  jsm: JetStreamManager,
  t: MessageQueueTrigger,
): Promise<void> {
  if (!t.spec.stream) return;
  try {
    await jsm.consumers.delete(t.spec.stream, mqtName(t));
  } catch (err) {
    if (!/not found/i.test((err as Error).message)) throw err;
  }
}

/** Creates the stream, or adds the subject to it when none of its subjects captures it. */
export async function ensureStreamCaptures(
  jsm: JetStreamManager,
  stream: string,
  subject: string,
): Promise<void> {
  let subjects: string[];
  try {
    const info = await jsm.streams.info(stream);
    subjects = info.config.subjects ?? [];
    if (subjects.some((p) => subjectCovers(p, subject))) return;
    await jsm.streams.update(stream, { ...info.config, subjects: [...subjects, subject] });
  } catch (err) {
    if (!/not found/i.test((err as Error).message)) throw err;
    await jsm.streams.add({
      name: stream,
      subjects: [subject],
      retention: RetentionPolicy.Limits,
      storage: StorageType.File,
      max_age: STREAM_MAX_AGE_MS * 1_000_000,
    });
  }
}

/** Whether every subject `subject` matches is also matched by the stream subject `pattern`. */
export function subjectCovers(pattern: string, subject: string): boolean {
  const p = pattern.split(".");
  const s = subject.split(".");
  for (let i = 0; i < p.length; i++) {
    const pt = p[i] as string;
    if (pt === ">") return i < s.length;
    const st = s[i];
    if (st === undefined || st === ">") return false;
    if (pt !== "*" && pt !== st) return false;
  }
  return p.length === s.length;
}

/** A stream message as an Invocation, for its dead letter. */
function invocationOf(t: MessageQueueTrigger, m: JsMsg, callId: string): Invocation {
  const headers: Record<string, string> = {};
  if (m.headers) for (const [k, v] of m.headers) headers[k] = v.join(", ");
  return {
    callId,
    namespace: t.metadata.namespace,
    function: t.spec.function,
    source: "mqt",
    trigger: t.metadata.name,
    method: "POST",
    path: "/",
    headers,
    body: Buffer.from(m.data).toString("base64"),
    ...(t.spec.responseSubject ? { responseSubject: t.spec.responseSubject } : {}),
    ...(t.spec.errorSubject ? { errorSubject: t.spec.errorSubject } : {}),
    maxRetries: t.spec.maxRetries,
    createdAt: Math.floor(m.info.timestampNanos / 1_000_000),
  };
}
