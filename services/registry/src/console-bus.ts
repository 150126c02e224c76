import { randomBytes } from "node:crypto";
import {
  Codecs,
  serviceInboxPrefix,
  type GatewayStatsReply,
  type GatewayStatsRequest,
  type Instance,
  type Subjects,
} from "@fizz/events";
import { request, type Logger, type NatsConnection } from "@fizz/kit";

/** What the console's endpoints ask the other services, over NATS. */
export interface ConsoleBus {
  /** Every gateway's answer to `gateway.stats` that came within the window. */
  gatewayStats(req: GatewayStatsRequest): Promise<GatewayStatsReply[]>;
  /** The poolkeeper's instances (`poolkeeper.list`). */
  instances(): Promise<Instance[]>;
}

export interface ConsoleBusOptions {
  nc: NatsConnection;
  subjects: Subjects;
  sender: string;
  logger: Logger;
  /** Gateways known to be live (the update barrier's presence view): the answers to wait for. */
  liveGateways: () => string[];
  /** Longest wait for gateway answers; the merge uses whatever came (default 1500 ms). */
  statsWindowMs?: number;
  /** poolkeeper.list timeout (default 5000 ms). */
  rpcTimeoutMs?: number;
}

export function natsConsoleBus(o: ConsoleBusOptions): ConsoleBus {
  const log = o.logger.child({ component: "console" });
  const windowMs = o.statsWindowMs ?? 1500;
  return {
    gatewayStats(req) {
      // Request-many on a private inbox (like the update barrier): every gateway answers for the
      // requests it proxied. Done once each live gateway answered; a gateway that is slow or not
      // yet announced is simply missing from the chart until the next refresh.
      const expected = new Set(o.liveGateways());
      const inbox = `${serviceInboxPrefix("registry")}.${randomBytes(12).toString("hex")}`;
      const replies = new Map<string, GatewayStatsReply>();
      return new Promise((resolve) => {
        let done = false;
        const finish = () => {
          if (done) return;
          done = true;
          clearTimeout(deadline);
          sub.unsubscribe();
          resolve([...replies.values()]);
        };
        const sub = o.nc.subscribe(inbox, {
          callback: (err, msg) => {
            if (err) return;
            try {
              const reply = Codecs.gatewayStats.reply.decode(msg.data).data;
              replies.set(reply.gateway, reply);
            } catch (e) {
              log.warn({ err: (e as Error).message }, "malformed gateway.stats answer");
              return;
            }
            if (expected.size > 0 && [...expected].every((g) => replies.has(g))) finish();
          },
        });
        const deadline = setTimeout(finish, windowMs);
        o.nc.publish(o.subjects.gatewayStats, Codecs.gatewayStats.request.encode(req, o.sender), {
          reply: inbox,
        });
      });
    },
    async instances() {
      const reply = await request(
        o.nc,
        o.subjects.poolkeeperList,
        Codecs.poolkeeperList,
        {},
        {
          sender: o.sender,
          timeoutMs: o.rpcTimeoutMs ?? 5000,
        },
      );
      return reply.instances;
    },
  };
}
