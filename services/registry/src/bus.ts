import {
  Codecs,
  ENVELOPE_VERSION,
  type Codec,
  type RegistryListReply,
  type Subjects,
} from "@fizz/events";
import { publish, serve, type Logger, type NatsConnection, type Subscription } from "@fizz/kit";
import type { Counter } from "prom-client";
import { listBodyJson, listJson, type JsonListAnswer, type ListBounds } from "./list-params";
import type { Change, Operations } from "./operations";

/** NATS' default max_payload, for a connection that has not said its own yet. */
const DEFAULT_MAX_PAYLOAD = 1024 * 1024;

/**
 * `registry.list` answered with each object's JSON spliced into the reply: the bytes
 * Codecs.registryList's reply codec gives for the parsed objects (the envelope's keys in its
 * order; a test holds them equal), without parsing and encoding every object of every page.
 */
export const listContract: {
  request: typeof Codecs.registryList.request;
  reply: Codec<RegistryListReply, JsonListAnswer>;
} = {
  request: Codecs.registryList.request,
  reply: {
    type: Codecs.registryList.reply.type,
    decode: (bytes) => Codecs.registryList.reply.decode(bytes),
    encode(data, sender) {
      // `skipped` only when something was left out: the reply of a registry that reads everything
      // stays what it always was. `continue` only when more pages follow.
      const type = JSON.stringify(Codecs.registryList.reply.type);
      return listBodyJson(
        data.items,
        data.skipped.length > 0 ? data.skipped : undefined,
        data.continue,
        {
          before: `{"v":${ENVELOPE_VERSION},"type":${type},"sender":${JSON.stringify(sender)},"ts":${Date.now()},"data":`,
          after: "}",
        },
      );
    },
  },
};

/**
 * A reply's room for objects. A page: half the connection's max_payload, as before (services
 * page; many small replies). Without paging (older callers): what can be sent at all, less room
 * for the envelope and `skipped`; past it the reply used to fail to publish and the caller waited
 * for its timeout, now it is told to page (LIST_TOO_LARGE).
 */
function listBounds(nc: NatsConnection): ListBounds {
  const max = nc.info?.max_payload ?? DEFAULT_MAX_PAYLOAD;
  return {
    pageBytes: Math.floor(max / 2),
    allBytes: Math.max(Math.floor(max / 2), max - UNPAGED_REPLY_ROOM),
  };
}

/** Envelope and `skipped` (~40 bytes an object) of an unpaginated `registry.list` reply. */
const UNPAGED_REPLY_ROOM = 64 * 1024;

/** The queue group: replicas share `registry.get` / `registry.list`, each request answered once. */
export const QUEUE = "registry";

export interface RequestServer {
  /** Stops taking requests and waits for the ones being answered. */
  drain(): Promise<void>;
}

/**
 * `registry.get` and `registry.list` for services warming or refreshing their caches; builders'
 * `registry.build.report`; the poolkeeper's `registry.config.read`. A listing
 * names the stored objects it left out (`skipped`, unreadable here): they are not deleted, and
 * services keep what they hold of them.
 */
export function serveRequests(
  nc: NatsConnection,
  s: Subjects,
  ops: Operations,
  opts: { sender: string; logger: Logger },
): RequestServer {
  const common = { sender: opts.sender, logger: opts.logger, queue: QUEUE };
  // serve() answers asynchronously; a subscription's drain does not wait for that, so track it.
  const inFlight = new Set<Promise<unknown>>();
  const track = <T>(p: Promise<T>): Promise<T> => {
    inFlight.add(p);
    void p.finally(() => inFlight.delete(p)).catch(() => undefined);
    return p;
  };
  const subs: Subscription[] = [
    serve(
      nc,
      s.registryGet,
      Codecs.registryGet,
      (req) => track(ops.get(req.kind, req.namespace, req.name).then((object) => ({ object }))),
      common,
    ),
    serve(
      nc,
      s.registryList,
      listContract,
      // Pages when asked with `limit`/`continue` (list-params.ts).
      (req) =>
        track(
          listJson(
            ops.store,
            req.kind,
            req.namespace,
            { limit: req.limit, continue: req.continue },
            // Within max_payload, with room for the envelope (listBounds).
            listBounds(nc),
          ),
        ),
      common,
    ),
    // Builders report a build's start and end; a stale report (newer source, package gone)
    // answers applied: false.
    serve(
      nc,
      s.registryBuildReport,
      Codecs.registryBuildReport,
      (report) => track(ops.buildReport(report)),
      common,
    ),
    // Secret values in the clear: only the poolkeeper's NATS user may publish this subject.
    serve(
      nc,
      s.registryConfigRead,
      Codecs.registryConfigRead,
      (req) => track(ops.readConfig(req)),
      common,
    ),
  ];
  return {
    async drain() {
      await Promise.all(subs.map((sub) => sub.drain().catch(() => undefined)));
      await Promise.allSettled([...inFlight]);
    },
  };
}

/** How long an answer to a write may wait for NATS to confirm the change event. */
const FLUSH_TIMEOUT_MS = 2000;

/**
 * Publishes `registry.changed.<kind>` at once and returns the confirmation: a flush, so that the
 * write is answered only once the server has the event and a client that saw its update
 * acknowledged can count on the event being out. Two steps so the caller can queue the update
 * barrier's question behind the event before the flush's PING: the three then leave in one
 * socket write (a flush writes what is queued at once; index.ts afterCommit).
 * A failure is logged, not thrown: the write is committed, and answering an error would make the
 * client retry a write that happened. Services also resync with `registry.list` when they start.
 */
export function changePublisher(
  nc: NatsConnection,
  s: Subjects,
  opts: { sender: string; logger: Logger; published: Counter<"kind" | "op" | "result"> },
): (change: Change) => () => Promise<void> {
  const log = opts.logger.child({ component: "events" });
  return ({ kind, op, object }) => {
    const { namespace, name, revision } = object.metadata;
    let failed: Error | undefined;
    try {
      publish(
        nc,
        s.registryChanged(kind),
        Codecs.registryChanged,
        { kind, op, namespace, name, revision, object },
        opts.sender,
      );
    } catch (err) {
      failed = err instanceof Error ? err : new Error(String(err));
    }
    return async () => {
      try {
        if (failed !== undefined) throw failed;
        await withTimeout(nc.flush(), FLUSH_TIMEOUT_MS);
        opts.published.inc({ kind, op, result: "ok" });
      } catch (err) {
        opts.published.inc({ kind, op, result: "error" });
        log.error(
          { err: (err as Error).message, kind, op, namespace, name, revision },
          "change event not confirmed by NATS",
        );
      }
    };
  };
}

function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer from NATS within ${ms} ms`)), ms);
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}
