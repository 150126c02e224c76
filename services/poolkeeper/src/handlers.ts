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
export function onDied(announce: InstancePublisher, backend: Backend, logger: Logger) {
  const log = logger.child({ component: "instances" });
  return (t: Tracked, info: ExitInfo) => {
    log.warn(
      { instance: t.instance.id, function: fnLabel(t), state: t.state, reason: info.reason },
      "instance died",
    );
    announce("died", toInstance(t, backend.kind), info.reason);
  };
}

/**
 * Instance output. A specialized instance's lines are the function's own prints: info level, so
 * they show in the `npm start` terminal, and on logs.<ns>.<fn> for `fizz fn logs`. A warm
 * instance's are the loader's: debug level.
 */
export function forwardOutput(opts: {
  backend: Backend;
  pool: Pool;
  nc: NatsConnection;
  subjects: Subjects;
  sender: string;
  logger: Logger;
}): void {
  const log = opts.logger.child({ component: "instance" });
  opts.backend.onOutput((instance, stream, line) => {
    const t = opts.pool.get(instance.id);
    const fn = t?.state === "specialized" ? t.function : undefined;
    if (!fn) {
      log.debug(
        {
          instance: instance.id,
          environment: `${instance.environment.namespace}/${instance.environment.name}`,
          stream,
        },
        line,
      );
      return;
    }
    log.info({ instance: instance.id, function: `${fn.namespace}/${fn.name}`, stream }, line);
    publish(
      opts.nc,
      opts.subjects.logs(fn.namespace, fn.name),
      Codecs.logs,
      {
        namespace: fn.namespace,
        function: fn.name,
        revision: fn.revision,
        instanceId: instance.id,
        stream,
        line,
        ts: Date.now(),
      },
      opts.sender,
    );
  });
}

function fnLabel(t: Tracked): string | undefined {
  return t.function
    ? `${t.function.namespace}/${t.function.name}@${t.function.revision}`
    : undefined;
}
