import { Codecs, type GatewaySyncRequest, type Subjects } from "@fizz/events";
import { publish, serve, type Logger, type NatsConnection } from "@fizz/kit";
import type { RouteStore } from "./routes";

/**
 * The gateway's side of the registry's update barrier. The gateway announces itself on
 * `gateway.presence` (at once and every `intervalMs`), so the registry knows how many answers to
 * wait for, and answers every `gateway.sync` (no queue group: each gateway answers for itself)
 * once it has applied the change named in it — from the change event if that came first, from the
 * request otherwise. The registry answers the client's write after that, so a client that saw its
 * update acknowledged can count on this gateway serving the new revision.
 */
export interface SyncOptions {
  nc: NatsConnection;
  subjects: Subjects;
  id: string;
  routes: RouteStore;
  intervalMs: number;
  logger: Logger;
  signal: AbortSignal;
  /** Message-queue triggers: applied once (un)subscribed (mq-triggers.ts). */
  mqTriggers?: (req: GatewaySyncRequest, signal: AbortSignal) => Promise<boolean>;
}

export function joinBarrier(opts: SyncOptions): { stop(): void } {
  const { nc, subjects, id, routes, intervalMs, signal } = opts;
  const log = opts.logger.child({ component: "sync" });
  const sub = serve(
    nc,
    subjects.gatewaySync,
    Codecs.gatewaySync,
    async (req) => {
      const applied =
        req.kind === "mqtriggers" && opts.mqTriggers
          ? await opts.mqTriggers(req, signal)
          : await routes.sync(req, signal);
      if (!applied) log.warn(req, "could not apply a change the registry asked about");
      return { gateway: id, applied };
    },
    { sender: id, logger: log },
  );
  const announce = (every: number) =>
    publish(
      nc,
      subjects.gatewayPresence,
      Codecs.gatewayPresence,
      { gateway: id, intervalMs: every },
      id,
    );
  announce(intervalMs);
  const timer = setInterval(() => announce(intervalMs), intervalMs);
  timer.unref();
  return {
    stop() {
      clearInterval(timer);
      // A last beat announcing a 1 ms interval: the registry forgets this gateway at once instead
      // of holding every barrier for it until three beats are missed.
      announce(1);
      sub.unsubscribe();
    },
  };
}
