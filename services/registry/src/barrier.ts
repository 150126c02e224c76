import { randomBytes } from "node:crypto";
import {
  Codecs,
  serviceInboxPrefix,
  type GatewaySyncReply,
  type GatewaySyncRequest,
  type Subjects,
} from "@fizz/events";
import { listen, type Logger, type NatsConnection, type Subscription } from "@fizz/kit";
import type { Change } from "./operations";

/**
 * The update barrier. After a committed write of a function, an HTTP or an mq trigger (after its
 * change event is out), the registry asks every live gateway on `gateway.sync` (request-many: each
 * gateway answers for itself) and answers the client only once all of them said they applied the
 * change, or FIZZ_SYNC_TIMEOUT_MS passed. So a client that saw `fizz fn update` acknowledged can
 * count on every gateway that answered serving the new revision. A missed barrier is logged and
 * the write still answered: it is committed, and the laggard converges when the event reaches it.
 *
 * "Live" comes from `gateway.presence` beats: a gateway is waited for until it missed
 * MISSED_BEATS of its own announced intervals. A gateway stopping announces a 1 ms interval, which
 * makes it leave at once.
 */
const MISSED_BEATS = 3;
/** How often a running barrier checks whether a gateway it waits for is gone. */
const RECHECK_MS = 50;

/**
 * The kinds gateways serve from memory (mq triggers: gateways subscribe to their subjects); writes
 * of other kinds (timers: scheduler, watches: kubewatcher) answer without a barrier.
 */
const GATEWAY_KINDS: ReadonlySet<string> = new Set(["functions", "httptriggers", "mqtriggers"]);

export interface BarrierOptions {
  nc: NatsConnection;
  subjects: Subjects;
  sender: string;
  logger: Logger;
  timeoutMs: number;
  now?: () => number;
  /** `complete` (every live gateway applied it), `incomplete` (timeout or not applied), `none` (no gateway). */
  onResult?: (result: "complete" | "incomplete" | "none") => void;
}

export interface BarrierResult {
  /** Gateways live when the barrier started. */
  waitedFor: string[];
  /** Gateways that answered `applied: true` (gateways not yet known to be live count too). */
  applied: string[];
  /** Gateways that answered `applied: false`. */
  failed: string[];
  /** Live gateways that did not answer in time (and did not leave meanwhile). */
  missing: string[];
}

export class UpdateBarrier {
  /** Gateway id → when to stop waiting for it. */
  private readonly gateways = new Map<string, number>();
  private sub: Subscription | undefined;
  /**
   * Every barrier's answers arrive on one subscription, `<replyPrefix>.<barrier>`: a subscription
   * per barrier cost each write a SUB and an UNSUB (protocol writes, and server work) besides its
   * request. Under the registry's own inbox prefix: the app user may subscribe to `_INBOX.>`, never
   * to this; the random part keeps two registries' answers apart.
   */
  private replies: Subscription | undefined;
  private readonly replyPrefix = `${serviceInboxPrefix("registry")}.${randomBytes(12).toString("hex")}`;
  /** Running barriers by their reply token: an answer's handler, and how to end it at once. */
  private readonly running = new Map<
    string,
    { answer: (answer: GatewaySyncReply) => void; finish: () => void }
  >();
  private nextToken = 0;
  private readonly log: Logger;
  private readonly now: () => number;

  constructor(private readonly o: BarrierOptions) {
    this.log = o.logger.child({ component: "barrier" });
    this.now = o.now ?? Date.now;
  }

  /** Starts tracking gateway presence, and listening for barriers' answers. */
  start(): void {
    this.sub = listen(
      this.o.nc,
      this.o.subjects.gatewayPresence,
      Codecs.gatewayPresence,
      ({ gateway, intervalMs }) => {
        this.gateways.set(gateway, this.now() + MISSED_BEATS * intervalMs);
      },
      { logger: this.log },
    );
    this.replies = this.o.nc.subscribe(`${this.replyPrefix}.*`, {
      callback: (err, msg) => {
        if (err) return;
        const barrier = this.running.get(msg.subject.slice(this.replyPrefix.length + 1));
        if (!barrier) return; // a late answer to a barrier that finished
        try {
          barrier.answer(Codecs.gatewaySync.reply.decode(msg.data).data);
        } catch (e) {
          this.log.warn({ err: (e as Error).message }, "malformed gateway.sync answer");
        }
      },
    });
  }

  /**
   * Stops listening. Barriers still running end at once with their unanswered gateways missing:
   * no answer can reach them any more, and their timers would otherwise run to the timeout.
   */
  stop(): void {
    this.sub?.unsubscribe();
    this.sub = undefined;
    this.replies?.unsubscribe();
    this.replies = undefined;
    for (const { finish } of [...this.running.values()]) finish();
  }

  /** Gateways heard from within their last MISSED_BEATS intervals. */
  live(): string[] {
    const now = this.now();
    for (const [id, until] of this.gateways) if (until <= now) this.gateways.delete(id);
    return [...this.gateways.keys()];
  }

  /** The barrier for one committed change; never throws (the write already happened). */
  async afterChange({ kind, op, object }: Change): Promise<void> {
    if (!GATEWAY_KINDS.has(kind)) return;
    const { namespace, name, revision, uid } = object.metadata;
    const req: GatewaySyncRequest = { kind, op, namespace, name, revision, uid };
    try {
      const r = await this.run(req);
      if (r.waitedFor.length === 0) {
        this.o.onResult?.("none");
      } else if (r.missing.length === 0 && r.failed.length === 0) {
        this.o.onResult?.("complete");
      } else {
        this.o.onResult?.("incomplete");
        this.log.warn(
          { ...req, missing: r.missing, failed: r.failed, timeoutMs: this.o.timeoutMs },
          "update barrier incomplete: answering the write anyway; these gateways may serve the old state until the change event reaches them",
        );
      }
    } catch (err) {
      this.o.onResult?.("incomplete");
      this.log.error({ ...req, err: (err as Error).message }, "update barrier failed");
    }
  }

  /** Asks every gateway, resolving when each live one answered, left, or the timeout passed. */
  run(req: GatewaySyncRequest): Promise<BarrierResult> {
    const waitedFor = this.live();
    const result: BarrierResult = { waitedFor, applied: [], failed: [], missing: [] };
    if (waitedFor.length === 0) return Promise.resolve(result);
    // Not started (or stopped): no answer could arrive, so none is waited for.
    if (!this.replies) return Promise.resolve({ ...result, missing: waitedFor });
    const waiting = new Set(waitedFor);
    const { nc, subjects, sender, timeoutMs } = this.o;
    const token = (this.nextToken++).toString(36);
    return new Promise((resolve, reject) => {
      let done = false;
      const end = () => {
        done = true;
        clearTimeout(deadline);
        clearInterval(recheck);
        this.running.delete(token);
      };
      const finish = () => {
        if (done) return;
        end();
        result.missing = [...waiting];
        resolve(result);
      };
      this.running.set(token, {
        answer: ({ gateway, applied }) => {
          (applied ? result.applied : result.failed).push(gateway);
          waiting.delete(gateway);
          if (waiting.size === 0) finish();
        },
        finish,
      });
      const deadline = setTimeout(finish, timeoutMs);
      // A gateway that stopped (or went silent) meanwhile is no longer waited for.
      const recheck = setInterval(() => {
        const live = new Set(this.live());
        for (const id of waiting) if (!live.has(id)) waiting.delete(id);
        if (waiting.size === 0) finish();
      }, RECHECK_MS);
      try {
        nc.publish(subjects.gatewaySync, Codecs.gatewaySync.request.encode(req, sender), {
          reply: `${this.replyPrefix}.${token}`,
        });
      } catch (err) {
        // The question never left (a closed or draining connection): no answer can come, so
        // the barrier fails now (afterChange logs it; the write is answered, committed) instead
        // of its timers running to the timeout.
        end();
        reject(err instanceof Error ? err : new Error(String(err)));
      }
    });
  }
}
