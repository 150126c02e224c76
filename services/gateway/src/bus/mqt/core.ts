import { randomUUID } from "node:crypto";
import { FizzError, isUserReplySubject, type MessageQueueTrigger } from "@fizz/events";
import type { Msg, TraceContext } from "@fizz/kit";
import { publishAnswer, respondAnswer } from "../invoker/deliver";
import { callFunction } from "../invoker/invoke";
import { settle, stopController } from "../invoker/stopping";
import { failureOf, outcomeOf, type Outcome } from "../invoker/outcome";
import { deliverySpan, messageRequest, mqtName, type MqtDeps, type MqtRunner } from "./common";

/**
 * A message-queue trigger without a stream: core NATS, at most once, lowest latency. Every
 * gateway subscribes in the trigger's queue group, so each message reaches one gateway, which
 * calls the function directly (no JetStream on the way). A message with a reply subject gets the
 * function's answer as the reply (functions as NATS services: `nats request` works); otherwise
 * an answer below 400 goes to `responseSubject` and anything else to `errorSubject`.
 *
 * At most once means: no retries after the function may have run (a timeout, an instance dying
 * mid-call, a 5xx) — the failure is the answer. Calls that did not reach the function (refused,
 * misdirected) are sent again like HTTP requests are.
 */
export async function startCoreTrigger(d: MqtDeps, t: MessageQueueTrigger): Promise<MqtRunner> {
  const { namespace, name } = t.metadata;
  const s = t.spec;
  const log = d.logger.child({ component: "mqt", trigger: `${namespace}/${name}` });
  const active = { size: 0 };
  const stopping = stopController();

  const handle = async (msg: Msg): Promise<void> => {
    active.size++;
    const { span, trace } = deliverySpan(t, msg.headers, msg.subject);
    try {
      const outcome = await call(msg, stopping.signal, trace);
      if (outcome.kind === "failed") span?.fail(outcome.error.message);
      const ok = outcome.kind === "answered" && outcome.answer.status < 400;
      d.metrics.invocation("mqt-core", ok ? "succeeded" : "failed");
      d.metrics.observe("mqt-core", outcome.answer.durationMs);
      d.metrics.attempt({ namespace, function: s.function }, "mqt", outcome.answer);
      if (msg.reply && isUserReplySubject(msg.reply, d.subjects.prefix)) {
        respondAnswer(d.nc, (data, opts) => msg.respond(data, opts), outcome.answer, {}, log);
      } else if (msg.reply) {
        log.warn(
          { reply: msg.reply },
          "answer not sent: the message's reply subject is internal (platform, $-system or a service inbox)",
        );
      } else {
        const subject = ok ? s.responseSubject : s.errorSubject;
        if (subject) publishAnswer(d.nc, subject, outcome.answer, {}, log);
      }
    } finally {
      span?.end();
      active.size--;
    }
  };

  const call = async (msg: Msg, signal: AbortSignal, trace: TraceContext): Promise<Outcome> => {
    const fl = d.lookup(namespace, s.function);
    if (!fl) {
      return failureOf(
        fl === null
          ? new FizzError("NOT_FOUND", `function ${s.function} not found in namespace ${namespace}`)
          : new FizzError("UNAVAILABLE", "the gateway is still loading its routes"),
      );
    }
    try {
      await d.limiter.acquire(fl, d.queueMax);
    } catch (err) {
      d.metrics.invocation("mqt-core", "rejected");
      return failureOf(err);
    }
    const startedAt = performance.now();
    try {
      const req = messageRequest(
        t,
        msg.subject,
        msg.headers,
        msg.data,
        randomUUID(),
        d.maxResponseBytes,
        signal,
        trace,
      );
      return outcomeOf(await callFunction(d.leases, fl, req));
    } catch (err) {
      return failureOf(err, performance.now() - startedAt);
    } finally {
      d.limiter.release(fl);
    }
  };

  const sub = d.nc.subscribe(s.subject, {
    queue: s.queueGroup ?? mqtName(t),
    callback: (err, msg) => {
      if (err) {
        log.error({ err: err.message }, "subscription error");
        return;
      }
      handle(msg).catch((e: unknown) => log.error({ err: e }, "message handling failed"));
    },
  });
  // Once the server has the subscription, a message published after this resolves reaches us:
  // only then may the update barrier hear "applied".
  await d.nc.flush();
  log.info({ subject: s.subject, queue: s.queueGroup ?? mqtName(t) }, "subscribed (core NATS)");

  return {
    async stop(drainMs) {
      sub.unsubscribe();
      await settle(active, drainMs);
      stopping.abort();
      await settle(active, 1000);
    },
  };
}
