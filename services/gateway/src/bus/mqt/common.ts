import type { MessageQueueTrigger, Subjects } from "@fizz/events";
import {
  childOf,
  takeTrace,
  tracer,
  type Logger,
  type NatsConnection,
  type Span,
  type TraceContext,
} from "@fizz/kit";
import type { JetStreamClient, JetStreamManager } from "@nats-io/jetstream";
import type { MsgHdrs } from "@nats-io/transport-node";
import type { BusConfig } from "../bus-config";
import type { BusMetrics } from "../bus-metrics";
import type { CallRequest } from "../invoker/invoke";
import type { BusLimiter } from "../invoker/limiter";
import { requestHeadersOf } from "../invoker/deliver";
import type { FunctionLeases, LeaseManager } from "../../front-door/index";

/** What a running message-queue trigger needs from the gateway. */
export interface MqtDeps {
  nc: NatsConnection;
  /** Undefined until JetStream answers; JetStream triggers wait for it. */
  jetstream: () => { js: JetStreamClient; jsm: JetStreamManager } | undefined;
  subjects: Subjects;
  id: string;
  leases: LeaseManager;
  /** The function's lease state; null when no such function; undefined while routes load. */
  lookup: (namespace: string, name: string) => FunctionLeases | null | undefined;
  limiter: BusLimiter;
  config: BusConfig;
  maxResponseBytes: number;
  /** Core triggers: messages that may wait for a bus slot per function before 429 (FIZZ_QUEUE_MAX). */
  queueMax: number;
  metrics: BusMetrics;
  logger: Logger;
}

/** A trigger's subscription or consumer loop while it runs. */
export interface MqtRunner {
  /** Stops taking messages; lets calls in flight finish for `drainMs`, then aborts them. */
  stop(drainMs: number): Promise<void>;
}

/** Default queue group and durable consumer name of a trigger. */
export function mqtName(t: MessageQueueTrigger): string {
  return `fizz-mqt-${t.metadata.namespace}-${t.metadata.name}`;
}

/**
 * A NATS message as the function's request: POST / with the message's headers (and the trigger's
 * content type unless the message has one), the payload as the body.
 */
export function messageRequest(
  t: MessageQueueTrigger,
  subject: string,
  h: MsgHdrs | undefined,
  data: Uint8Array,
  callId: string,
  maxResponseBytes: number,
  signal: AbortSignal | undefined,
  trace: TraceContext,
): CallRequest {
  const headers = requestHeadersOf(h, t.spec.contentType);
  headers.push(
    "x-fizz-call-id",
    callId,
    // The deduplication key: a JetStream message redelivered after a crash keeps its id.
    "x-call-id",
    callId,
    "x-fizz-source",
    "mqt",
    "x-fizz-trigger",
    t.metadata.name,
    "x-fizz-subject",
    subject,
    "x-fizz-function-name",
    t.spec.function,
    "x-fizz-function-namespace",
    t.metadata.namespace,
    "x-request-id",
    callId,
  );
  return {
    method: "POST",
    path: "/",
    headers,
    body: data.length > 0 ? data : null,
    maxResponseBytes,
    signal,
    trace,
  };
}

/**
 * A delivery's span (recording) and the context its call continues: the publisher's
 * `traceparent` from the message headers, or a new trace.
 */
export function deliverySpan(
  t: MessageQueueTrigger,
  h: MsgHdrs | undefined,
  subject: string,
): { span: Span | undefined; trace: TraceContext } {
  const tr = tracer();
  const received = takeTrace(h);
  const span = tr.recording
    ? tr.startSpan("mqt.deliver", "consumer", received.trace, {
        "fizz.function": `${t.metadata.namespace}/${t.spec.function}`,
        "fizz.trigger": t.metadata.name,
        "messaging.destination.name": subject,
      })
    : undefined;
  return { span, trace: span?.context ?? childOf(received.trace) };
}
