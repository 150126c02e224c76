import {
  Codecs,
  type InstanceEvent,
  type Instance,
  type RetireReply,
  type RetireRequest,
  type Subjects,
} from "@fizz/events";
import { publish, type Logger, type NatsConnection } from "@fizz/kit";
import type { Backend, ExitInfo } from "./backend";
import { toInstance, type Tracked } from "./instances";
import type { Pool } from "./pool";

/** Publishes poolkeeper.instance.<event>. */
export type InstancePublisher = (event: InstanceEvent, instance: Instance, reason?: string) => void;

export function instancePublisher(
  nc: NatsConnection,
  s: Subjects,
  sender: string,
): InstancePublisher {
  return (event, instance, reason) =>
    publish(
      nc,
      s.poolkeeperInstance(event),
      Codecs.poolkeeperInstance,
      { event, instance, ...(reason ? { reason } : {}) },
      sender,
    );
}

/** poolkeeper.retire: kill it, and say so (retired: false when it is not ours or already gone). */
export function createRetire(
  pool: Pool,
  backend: Backend,
  announce: InstancePublisher,
  logger: Logger,
) {
  const log = logger.child({ component: "retire" });
  return async (req: RetireRequest): Promise<RetireReply> => {
    const t = pool.get(req.instanceId);
    if (!t) return { retired: false };
    const instance = toInstance(t, backend.kind);
    const killed = await pool.kill(req.instanceId, `retired: ${req.reason}`);
    if (killed) {
      log.info(
        { instance: req.instanceId, function: fnLabel(t), reason: req.reason },
        "instance retired",
      );
      announce("retired", instance, req.reason);
    }
    return { retired: killed };
  };
}

export function createList(pool: Pool, backend: Backend) {
  return (): Promise<{ instances: Instance[] }> =>
    Promise.resolve({ instances: pool.list().map((t) => toInstance(t, backend.kind)) });
}

/** An unexpected exit: tell everyone (the scheduler drops its routes); the pool refills itself. */
export function onDied(
  announce: InstancePublisher,
  backend: Backend,
  logger: Logger,
  /** The reason quotes the instance's last stderr line: its secrets are masked (src/logs). */
  mask: (t: Tracked, text: string) => string = (_t, text) => text,
) {
  const log = logger.child({ component: "instances" });
  return (t: Tracked, info: ExitInfo) => {
    const reason = mask(t, info.reason);
    log.warn(
      { instance: t.instance.id, function: fnLabel(t), state: t.state, reason },
      "instance died",
    );
    announce("died", toInstance(t, backend.kind), reason);
  };
}

function fnLabel(t: Tracked): string | undefined {
  return t.function
    ? `${t.function.namespace}/${t.function.name}@${t.function.revision}`
    : undefined;
}
