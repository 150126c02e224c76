import {
  jetstream,
  jetstreamManager,
  RetentionPolicy,
  StorageType,
  type JetStreamClient,
} from "@nats-io/jetstream";
import { Kvm, type KV } from "@nats-io/kv";
import { CALLS_BUCKET, Codecs, Streams, type Invocation, type Subjects } from "@fizz/events";
import type { NatsConnection } from "./nats";
import { putTrace } from "./tracing/nats-headers";
import type { TraceContext } from "./tracing/traceparent";

/**
 * The JetStream objects of the bus-originated path, created idempotently by whichever service
 * needs them first (publishers and consumers alike), so start order never matters:
 * - FIZZ_INVOCATIONS: `<prefix>.invoke.>`, work-queue retention (a message lives until an invoker
 *   acknowledges it), file storage so a nats-server restart loses nothing;
 * - FIZZ_DEAD: `<prefix>.dead.>`, kept for operators (limits retention, 14 days);
 * - KV `fizz_calls`: async call status, kept for the retention period.
 */
export interface BusOptions {
  /** How long async call status stays queryable (ms). */
  callRetentionMs?: number;
  /** Window in which a re-published invocation with the same callId is dropped (ms). */
  duplicateWindowMs?: number;
}

const MS = 1_000_000; // JetStream durations are nanoseconds.

/** How long JetStream drops a re-published invocation with the same callId (message id). */
export const DEFAULT_DUPLICATE_WINDOW_MS = 120_000;

export async function ensureBus(
  nc: NatsConnection,
  subjects: Subjects,
  opts: BusOptions = {},
): Promise<{ js: JetStreamClient; calls: KV }> {
  const jsm = await jetstreamManager(nc);
  await upsertStream(jsm, {
    name: Streams.invocations,
    subjects: [subjects.invokeAll],
    retention: RetentionPolicy.Workqueue,
    storage: StorageType.File,
    duplicate_window: (opts.duplicateWindowMs ?? DEFAULT_DUPLICATE_WINDOW_MS) * MS,
  });
  await upsertStream(jsm, {
    name: Streams.dead,
    subjects: [`${subjects.prefix}.dead.>`],
    retention: RetentionPolicy.Limits,
    storage: StorageType.File,
    max_age: 14 * 24 * 3600 * 1000 * MS,
  });
  const js = jetstream(nc);
  const calls = await new Kvm(js).create(CALLS_BUCKET, {
    ttl: opts.callRetentionMs ?? 24 * 3600 * 1000,
    history: 1,
  });
  return { js, calls };
}

type Jsm = Awaited<ReturnType<typeof jetstreamManager>>;
type StreamConfig = Parameters<Jsm["streams"]["add"]>[0];

async function upsertStream(jsm: Jsm, config: StreamConfig): Promise<void> {
  try {
    await jsm.streams.info(config.name);
    await jsm.streams.update(config.name, config);
  } catch (err) {
    if (!/not found/i.test(String((err as Error).message))) throw err;
    await jsm.streams.add(config);
  }
}

/**
 * Publishes an invocation on `invoke.<ns>.<fn>` and waits for the stream's acknowledgement, so a
 * caller told "accepted" (202) knows the message is stored. The callId is the JetStream message
 * id: a publisher retrying after a lost ack does not enqueue the call twice.
 */
export async function publishInvocation(
  js: JetStreamClient,
  subjects: Subjects,
  inv: Invocation,
  sender: string,
  /** The publisher's trace context, in the message headers, for the invoker to continue. */
  trace?: TraceContext,
): Promise<void> {
  await js.publish(
    subjects.invoke(inv.namespace, inv.function),
    Codecs.invoke.encode(inv, sender),
    {
      msgID: inv.callId,
      ...(trace !== undefined ? { headers: putTrace(trace, inv.headers["x-request-id"]) } : {}),
    },
  );
}
