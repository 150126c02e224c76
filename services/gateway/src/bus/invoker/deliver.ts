import { Codecs, FizzError, type DeadLetter, type Invocation, type Subjects } from "@fizz/events";
import type { Logger, NatsConnection } from "@fizz/kit";
import type { JetStreamClient, JsMsg } from "@nats-io/jetstream";
import { headers as natsHeaders, type MsgHdrs } from "@nats-io/transport-node";
import { isHopByHop } from "../../front-door/index";
import { errorAnswer, type Answer } from "./outcome";

/**
 * Getting results out: function answers as NATS messages (reply, response and error subjects),
 * dead letters, and the in-progress acks that keep a long call's message ours.
 *
 * A function's answer as a NATS message: the body as the payload, the status as `Fizz-Status`, and
 * the function's response headers as NATS headers (those a NATS header can carry).
 */
export const STATUS_HEADER = "Fizz-Status";
export const CALL_ID_HEADER = "Fizz-Call-Id";

const NATS_HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;

export function answerHeaders(a: Answer, extra: Record<string, string> = {}): MsgHdrs {
  const h = natsHeaders();
  for (const [name, value] of Object.entries(a.headers)) {
    if (NATS_HEADER_NAME.test(name) && !/[\r\n]/.test(value)) h.set(name, value);
  }
  h.set(STATUS_HEADER, String(a.status));
  for (const [name, value] of Object.entries(extra)) h.set(name, value);
  return h;
}

/**
 * NATS message headers as the function's HTTP request headers (repeated ones joined), without
 * hop-by-hop ones and without X-Fizz-*, X-Call-Id, X-Request-Id, X-Forwarded-*, Forwarded and the
 * trace context (which only the gateway sets); a content type from the message wins over the
 * trigger's.
 */
export function requestHeadersOf(h: MsgHdrs | undefined, contentType: string): string[] {
  const out: string[] = [];
  let typed = false;
  if (h) {
    for (const [name, values] of h) {
      const lower = name.toLowerCase();
      if (!NATS_HEADER_NAME.test(name) || isHopByHop(lower) || lower.startsWith("x-fizz-"))
        continue;
      // X-Call-Id and X-Request-Id are the gateway's to set (the call's deduplication key, the id
      // its log lines are tagged with): a publisher's would reach the function as a second value.
      if (lower === "content-length" || lower === "host" || lower === "expect") continue;
      if (lower === "x-call-id" || lower === "x-request-id") continue;
      // Behind the gateway these always come from it (the client's address, host and scheme);
      // a publisher's would let it pose as any client to a function that trusts them.
      if (lower.startsWith("x-forwarded-") || lower === "forwarded") continue;
      // The caller's trace continues through the delivery's own span (CallRequest.trace).
      if (lower === "traceparent" || lower === "tracestate") continue;
      if (lower === "content-type") typed = true;
      out.push(name, values.join(", "));
    }
  }
  if (!typed) out.push("content-type", contentType);
  return out;
}

/**
 * Publishes an answer on a subject; an answer too large for the server (max_payload) goes out as
 * a PAYLOAD_TOO_LARGE error instead, so the receiver learns something happened. False when nothing
 * could be sent (connection closed).
 */
export function publishAnswer(
  nc: NatsConnection,
  subject: string,
  a: Answer,
  extra: Record<string, string>,
  log: Logger,
): boolean {
  return sendAnswer((data, headers) => nc.publish(subject, data, { headers }), nc, a, extra, log);
}

/** Answers a NATS request (the function as a NATS service). */
export function respondAnswer(
  nc: NatsConnection,
  respond: (data: Uint8Array, opts: { headers: MsgHdrs }) => boolean,
  a: Answer,
  extra: Record<string, string>,
  log: Logger,
): boolean {
  return sendAnswer((data, headers) => respond(data, { headers }), nc, a, extra, log);
}

function sendAnswer(
  send: (data: Uint8Array, headers: MsgHdrs) => unknown,
  nc: NatsConnection,
  a: Answer,
  extra: Record<string, string>,
  log: Logger,
): boolean {
  const max = nc.info?.max_payload ?? 1024 * 1024;
  let answer = a;
  if (a.body.length + 4096 > max) {
    answer = errorAnswer(
      new FizzError(
        "PAYLOAD_TOO_LARGE",
        `the function's response (${a.body.length} bytes, status ${a.status}) exceeds what NATS carries (max_payload ${max})`,
      ),
      a.durationMs,
    );
  }
  try {
    send(answer.body, answerHeaders(answer, extra));
    return true;
  } catch (err) {
    log.warn({ err: (err as Error).message }, "could not publish a function's answer");
    return false;
  }
}

/**
 * Publishes a dead letter on `dead.<ns>.<fn>` (stream FIZZ_DEAD) and waits for the stream's ack;
 * the call id is the message id, so the dead letter of a call handled twice is stored once.
 */
export async function publishDeadLetter(
  js: JetStreamClient,
  subjects: Subjects,
  sender: string,
  dl: DeadLetter,
): Promise<void> {
  const inv = dl.invocation;
  await js.publish(subjects.dead(inv.namespace, inv.function), Codecs.dead.encode(dl, sender), {
    msgID: `dead-${inv.callId}`,
  });
}

/** A dead letter keeps at most this much of the invocation's body (the stream has limits too). */
export function deadLetterOf(
  inv: Invocation,
  err: FizzError,
  attempts: number,
  status: number | undefined,
  maxBodyBytes: number,
): DeadLetter {
  const base64Max = Math.floor(maxBodyBytes / 3) * 4;
  const invocation =
    inv.body.length > base64Max ? { ...inv, body: inv.body.slice(0, base64Max) } : inv;
  return {
    invocation,
    error: err.toWire(),
    attempts: Math.max(1, attempts),
    ...(status !== undefined ? { status } : {}),
  };
}

/**
 * In-progress acks every third of the ack wait, so a call longer than the ack wait is not
 * redelivered to another invoker while it runs; stops when the returned function is called.
 */
export function keepWorking(m: JsMsg, ackWaitMs: number): () => void {
  const t = setInterval(
    () => {
      try {
        m.working();
      } catch {
        // Disconnected: the message will be redelivered after the ack wait; nothing to do here.
      }
    },
    Math.max(250, Math.floor(ackWaitMs / 3)),
  );
  t.unref();
  return () => clearInterval(t);
}

/**
 * Acks and NAKs are plain publishes: on a closed connection they throw. Nothing is lost then —
 * the message is redelivered after the ack wait — so the error must not escape a handler.
 */
export function settleMsg(act: () => void): void {
  try {
    act();
  } catch {
    // see above
  }
}
