import type { NatsConnection, Subscription } from "@nats-io/transport-node";
import {
  AckPolicy,
  DeliverPolicy,
  jetstreamManager,
  type ConsumerMessages,
} from "@nats-io/jetstream";
import { Codecs, FizzError, Streams, type Invocation, type TimeTrigger } from "@fizz/events";
import { ensureBus, publish, serve } from "@fizz/kit";
import { changedEvent } from "./timer-fixtures";
import { logger, s } from "./stage";

/** The test plays the registry for timer triggers: registry.list and change events. */
export class TimerRegistry {
  readonly timers = new Map<string, TimeTrigger>();
  private subs: Subscription[] = [];

  constructor(private readonly nc: NatsConnection) {}

  start(): void {
    const opts = { sender: "registry-test", logger };
    this.subs = [
      serve(
        this.nc,
        s.registryList,
        Codecs.registryList,
        (req) =>
          Promise.resolve({ items: req.kind === "timetriggers" ? [...this.timers.values()] : [] }),
        opts,
      ),
      serve(
        this.nc,
        s.registryGet,
        Codecs.registryGet,
        (req) =>
          Promise.reject(
            new FizzError("NOT_FOUND", `${req.kind} ${req.namespace}/${req.name} not found`),
          ),
        opts,
      ),
    ];
  }

  /** Stores the timer (what registry.list answers from now on) and publishes the change. */
  change(op: "created" | "updated" | "deleted", t: TimeTrigger): void {
    const key = `${t.metadata.namespace}/${t.metadata.name}`;
    if (op === "deleted") this.timers.delete(key);
    else this.timers.set(key, t);
    publish(
      this.nc,
      s.registryChanged("timetriggers"),
      Codecs.registryChanged,
      changedEvent(op, t),
      "registry-test",
    );
  }

  put(t: TimeTrigger): void {
    this.timers.set(`${t.metadata.namespace}/${t.metadata.name}`, t);
  }

  stop(): void {
    for (const sub of this.subs) sub.unsubscribe();
  }
}

export interface Firing {
  inv: Invocation;
  /** The envelope's sender: which scheduler replica published it. */
  sender: string;
  tick: number;
  receivedAt: number;
}

/**
 * Reads the invocation stream as the gateway's invoker would (one durable consumer, explicit
 * acks), recording every firing.
 */
export class InvocationTap {
  firings: Firing[] = [];
  private messages: ConsumerMessages | undefined;
  private reading: Promise<void> | undefined;

  constructor(private readonly nc: NatsConnection) {}

  async start(): Promise<void> {
    const { js } = await ensureBus(this.nc, s);
    const jsm = await jetstreamManager(this.nc);
    await jsm.consumers.add(Streams.invocations, {
      durable_name: "timer-test",
      ack_policy: AckPolicy.Explicit,
      deliver_policy: DeliverPolicy.All,
    });
    const consumer = await js.consumers.get(Streams.invocations, "timer-test");
    this.messages = await consumer.consume();
    const messages = this.messages;
    this.reading = (async () => {
      for await (const m of messages) {
        const env = Codecs.invoke.decode(m.data);
        this.firings.push({
          inv: env.data,
          sender: env.sender,
          tick: Date.parse(env.data.headers["x-fizz-scheduled-time"] ?? ""),
          receivedAt: Date.now(),
        });
        m.ack();
      }
    })();
  }

  of(timer: string): Firing[] {
    return this.firings.filter((f) => f.inv.trigger === timer);
  }

  async stop(): Promise<void> {
    await this.messages?.close();
    await this.reading;
    const jsm = await jetstreamManager(this.nc);
    await jsm.consumers.delete(Streams.invocations, "timer-test").catch(() => undefined);
  }
}
