import { backoffMs, retryUntil, sleep, type Logger } from "@fizz/kit";
import { settleMsg } from "./deliver";
import {
  AckPolicy,
  DeliverPolicy,
  type Consumer,
  type ConsumerMessages,
  type JetStreamClient,
  type JetStreamManager,
  type JsMsg,
} from "@nats-io/jetstream";

/**
 * A pull loop on one durable JetStream consumer that never holds more messages than there is
 * room to run: it fetches only `window()` messages beyond those already requested, and tops up
 * when work finishes (`wake`). Every replica runs one on the same durable consumer, so JetStream
 * spreads the messages between them, and a message is never sitting in a client-side buffer with
 * its ack-wait clock running while nothing works on it (what `consume()` would do, as it re-pulls
 * whatever the handler does).
 */
export interface PullerOptions {
  js: JetStreamClient;
  stream: string;
  durable: string;
  /** Messages this loop may hold now, counting those it runs (the caller's accounting). */
  window: () => number;
  /**
   * The smallest fetch worth a pull request while the loop is busy (a quarter of the window it
   * has at full room): one pull per finished message would cost more than the calls themselves.
   */
  minBatch: () => number;
  /** Takes ownership of one message (ack/nak/term are the handler's). */
  handle: (m: JsMsg) => void;
  logger: Logger;
}

/** Pull requests wait this long for messages before the server ends them (the client's minimum is 1 s). */
const EXPIRES_MS = 5000;
const MAX_BATCH = 256;
/** How long room below `minBatch` may wait for more before it is fetched anyway. */
const GATHER_MS = 5;

export class Puller {
  private requested = 0;
  private stopped = false;
  private readonly open = new Set<ConsumerMessages>();
  private wakeUp: (() => void) | undefined;
  private loop: Promise<void> | undefined;

  constructor(private readonly o: PullerOptions) {}

  start(): void {
    this.loop ??= this.run();
  }

  /** Room may have freed: fetch more now rather than at the next timer. */
  wake(): void {
    const w = this.wakeUp;
    this.wakeUp = undefined;
    w?.();
  }

  /** Ends the open pull requests; messages already handed out stay with their handlers. */
  async stop(): Promise<void> {
    this.stopped = true;
    for (const f of this.open) f.stop();
    this.wake();
    await this.loop;
  }

  private async run(): Promise<void> {
    let consumer: Consumer | undefined;
    let shortSince = 0;
    for (let failures = 0; !this.stopped;) {
      const want = Math.min(this.o.window() - this.requested, MAX_BATCH);
      const min = Math.max(1, this.o.minBatch());
      if (want <= 0 || (this.requested > 0 && want < min)) {
        await this.idle(1000);
        continue;
      }
      if (want < min) {
        // Busy: gather finished calls for a few ms into one pull rather than one pull each.
        const now = performance.now();
        if (shortSince === 0) shortSince = now;
        if (now - shortSince < GATHER_MS) {
          await this.idle(GATHER_MS - (now - shortSince));
          continue;
        }
      }
      shortSince = 0;
      try {
        consumer ??= await this.o.js.consumers.get(this.o.stream, this.o.durable);
        const batch = await consumer.fetch({ max_messages: want, expires: EXPIRES_MS });
        failures = 0;
        this.requested += want;
        this.open.add(batch);
        void this.take(batch, want);
      } catch (err) {
        consumer = undefined;
        const wait = backoffMs(failures++, 250, 5000);
        this.o.logger.warn(
          {
            stream: this.o.stream,
            consumer: this.o.durable,
            err: (err as Error).message,
            retryInMs: wait,
          },
          "cannot pull messages; retrying",
        );
        await this.idle(wait);
      }
    }
  }

  private async take(batch: ConsumerMessages, want: number): Promise<void> {
    let got = 0;
    try {
      for await (const m of batch) {
        got++;
        this.requested--;
        if (this.stopped) {
          // Pulled just as we stopped: hand it straight back.
          settleMsg(() => m.nak());
          continue;
        }
        this.o.handle(m);
      }
    } catch (err) {
      this.o.logger.debug({ err: (err as Error).message, consumer: this.o.durable }, "pull ended");
    } finally {
      this.requested -= want - got;
      this.open.delete(batch);
      this.wake();
    }
  }

  /** Waits `ms` (kit's sleep), cut short by `wake()`. */
  private async idle(ms: number): Promise<void> {
    const woken = new AbortController();
    const done = () => woken.abort();
    this.wakeUp = done;
    await sleep(ms, woken.signal);
    if (this.wakeUp === done) this.wakeUp = undefined;
  }
}

/**
 * Creates a durable pull consumer, or brings an existing one to `ackWaitMs`. A consumer whose
 * filter differs is re-created (nats-server before 2.10 cannot change a filter in place).
 */
export async function ensurePullConsumer(
  jsm: JetStreamManager,
  stream: string,
  durable: string,
  o: { ackWaitMs: number; filterSubject?: string; deliverNew?: boolean },
): Promise<void> {
  const config = {
    durable_name: durable,
    ack_policy: AckPolicy.Explicit,
    ack_wait: o.ackWaitMs * 1_000_000,
    // Retries are counted by the handlers (a delivery deferred for capacity is not an attempt).
    max_deliver: -1,
    deliver_policy: o.deliverNew ? DeliverPolicy.New : DeliverPolicy.All,
    max_ack_pending: 10_000,
    ...(o.filterSubject ? { filter_subject: o.filterSubject } : {}),
  };
  // The only retry: another replica created the consumer at the same moment as us; look again.
  let raced = false;
  await retryUntil(
    async () => {
      raced = false;
      try {
        const info = await jsm.consumers.info(stream, durable);
        if ((info.config.filter_subject ?? "") !== (o.filterSubject ?? "")) {
          await jsm.consumers.delete(stream, durable);
          await jsm.consumers.add(stream, config);
        } else if (info.config.ack_wait !== config.ack_wait) {
          await jsm.consumers.update(stream, durable, { ack_wait: config.ack_wait });
        }
        return;
      } catch (err) {
        if (!/not found/i.test((err as Error).message)) throw err;
      }
      raced = true;
      await jsm.consumers.add(stream, config);
    },
    { attempts: 3, baseMs: 50, maxMs: 100, retryable: () => raced },
  );
}
