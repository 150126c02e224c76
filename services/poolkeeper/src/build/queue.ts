import {
  AckPolicy,
  DeliverPolicy,
  jetstreamManager,
  type JetStreamManager,
} from "@nats-io/jetstream";
import { BUILD_CONSUMER, BUILD_STREAM, type Subjects } from "@fizz/events";
import type { NatsConnection } from "@fizz/kit";

const NS = 1_000_000; // JetStream durations are nanoseconds.

/**
 * How long a delivered build request may go without word from its builder before JetStream hands
 * it to another; a running build says `working()` every ACK_WAIT_MS / 4.
 */
export const ACK_WAIT_MS = 60_000;

/**
 * The build stream as the registry creates it (BUILD_STREAM), when it does not exist yet: the
 * builder may start first. An existing stream is left as it is (the registry owns its settings).
 * Then the shared durable pull consumer every poolkeeper pulls from.
 */
export async function ensureBuildQueue(nc: NatsConnection, s: Subjects): Promise<void> {
  const jsm = await jetstreamManager(nc);
  await ensureStream(jsm, s);
  await ensureConsumer(jsm);
}

async function ensureStream(jsm: JetStreamManager, s: Subjects): Promise<void> {
  try {
    await jsm.streams.info(BUILD_STREAM.name);
    return;
  } catch (err) {
    if (!notFound(err)) throw err;
  }
  try {
    await jsm.streams.add({
      name: BUILD_STREAM.name,
      subjects: [s.buildRequested],
      retention: BUILD_STREAM.retention,
      storage: BUILD_STREAM.storage,
      duplicate_window: BUILD_STREAM.duplicateWindowMs * NS,
    });
  } catch (err) {
    // The registry created it meanwhile.
    if (!/already in use|exists/i.test(String((err as Error).message))) throw err;
  }
}

async function ensureConsumer(jsm: JetStreamManager): Promise<void> {
  const config = {
    durable_name: BUILD_CONSUMER,
    ack_policy: AckPolicy.Explicit,
    ack_wait: ACK_WAIT_MS * NS,
    // A build that cannot finish (its builder dies each time) is redelivered; the registry
    // re-asks for pending builds at start anyway.
    max_deliver: -1,
    deliver_policy: DeliverPolicy.All,
    max_ack_pending: 1_000,
  };
  try {
    const info = await jsm.consumers.info(BUILD_STREAM.name, BUILD_CONSUMER);
    if (info.config.ack_wait !== config.ack_wait)
      await jsm.consumers.update(BUILD_STREAM.name, BUILD_CONSUMER, { ack_wait: config.ack_wait });
    return;
  } catch (err) {
    if (!notFound(err)) throw err;
  }
  try {
    await jsm.consumers.add(BUILD_STREAM.name, config);
  } catch (err) {
    // Another poolkeeper added the same durable at the same moment: same config, nothing to do.
    if (!/already in use|exists/i.test(String((err as Error).message))) throw err;
  }
}

function notFound(err: unknown): boolean {
  return /not found/i.test(String((err as Error).message));
}
