import {
  Codecs,
  FizzError,
  type Environment,
  type EnvironmentRef,
  type Subjects,
} from "@fizz/events";
import {
  followRegistryListing,
  listen,
  request,
  type Logger,
  type NatsConnection,
  type Subscription,
} from "@fizz/kit";
import type { Pool } from "./pool";

export interface EnvironmentSync {
  subscription: Subscription;
  /** Resolves after the first successful listing (or when stopped before one). */
  synced: Promise<void>;
  lookup(ref: EnvironmentRef): Promise<Environment | undefined>;
}

const GET_TIMEOUT_MS = 2_000;

/**
 * Keeps the pool's environments in step with the registry: change events as they come, and a
 * full listing at start (retried until the registry answers: it may start after us) and after
 * every NATS reconnect (events published while we were away are lost).
 */
export function syncEnvironments(opts: {
  nc: NatsConnection;
  subjects: Subjects;
  pool: Pool;
  sender: string;
  logger: Logger;
  signal: AbortSignal;
}): EnvironmentSync {
  const log = opts.logger.child({ component: "environments" });
  const { nc, pool, subjects: s } = opts;

  // Subscribed before listing, so nothing published in between is missed.
  const subscription = listen(
    nc,
    s.registryChanged("environments"),
    Codecs.registryChanged,
    (ev) => {
      if (ev.object.kind !== "Environment") return;
      log.info(
        { environment: `${ev.namespace}/${ev.name}`, op: ev.op, revision: ev.revision },
        "environment changed",
      );
      if (ev.op === "deleted")
        pool.remove({ namespace: ev.namespace, name: ev.name }, ev.object.metadata.uid);
      else pool.upsert(ev.object);
    },
    { logger: log },
  );

  const { synced } = followRegistryListing({
    nc,
    subjects: s,
    kind: "environments",
    sender: opts.sender,
    logger: log,
    signal: opts.signal,
    onAttempt: () => pool.beginListing(),
    onFailure: () => pool.abortListing(),
    onList: (items, { skipped }) => pool.replaceAll(items, skipped),
  });

  return {
    subscription,
    synced,
    async lookup(ref) {
      try {
        const reply = await request(
          nc,
          s.registryGet,
          Codecs.registryGet,
          { kind: "environments", ...ref },
          {
            sender: opts.sender,
            timeoutMs: GET_TIMEOUT_MS,
          },
        );
        return reply.object.kind === "Environment" ? reply.object : undefined;
      } catch (err) {
        if (err instanceof FizzError && err.code === "NOT_FOUND") return undefined;
        throw err;
      }
    },
  };
}
