import {
  connect,
  type NatsConnection,
  type Msg,
  type NodeConnectionOptions,
  type Subscription,
} from "@nats-io/transport-node";
import {
  Codecs,
  FizzError,
  SERVICE_USERS,
  encodeError,
  serviceInboxPrefix,
  type Codec,
  type RpcContract,
  type ServiceUser,
} from "@fizz/events";
import { redactUrl } from "./config";
import type { Logger } from "./logger";
import { retryUntil, RetryStopped, warnWhenSlow } from "./retry";
import { trackConnection, type ConnectionTracker } from "./connection-metrics";
import { putTrace, takeTrace } from "./tracing/nats-headers";
import { currentScope, runInScope } from "./tracing/scope";
import { tracer } from "./tracing/tracer";
import type { TraceContext } from "./tracing/traceparent";

export type { NatsConnection, Msg, Subscription };

export interface NatsOptions {
  url: string;
  name: string;
  logger: Logger;
  signal?: AbortSignal;
}

/**
 * Connects, waiting (with back-off) until the server answers, then reconnects forever: a NATS
 * restart must never take a service down. Subscriptions survive reconnects inside the client; the
 * caller's readiness follows `isConnected`. A short wait for the server is normal at start-up and
 * is logged at debug level, with a warning once it lasts (`warnWhenSlow`).
 */
export async function connectNats(opts: NatsOptions): Promise<NatsConnection> {
  const log = opts.logger.child({ component: "nats" });
  const url = redactUrl(opts.url);
  const options = natsConnectionOptions(opts.url);
  const slow = warnWhenSlow(log, "waiting for NATS", { url });
  const conn = trackConnection("nats", opts.name);
  try {
    const nc = await retryUntil(
      () =>
        connect({
          ...options,
          name: opts.name,
          maxReconnectAttempts: -1,
          reconnectTimeWait: 250,
          pingInterval: 10_000,
          // Without it every request and every subscription with a timeout builds an Error up
          // front (a stack captured per request, in case it fails later): measurable CPU per
          // cold start and per registry write. Our errors carry codes and causes, not these stacks.
          noAsyncTraces: true,
        }),
      {
        baseMs: 200,
        maxMs: 5_000,
        ...(opts.signal ? { signal: opts.signal } : {}),
        onRetry: (info) => {
          // A wrong password never fixes itself, but the Secret may be rotated under us: keep
          // trying, and say plainly what is wrong (the user, never the password), every time.
          if (/authoriz|authenticat/i.test(errorText(info.err))) {
            log.error(
              { url, user: options.user ?? null, retryInMs: info.waitMs },
              "NATS refused our credentials (check FIZZ_NATS_USER / FIZZ_NATS_PASSWORD)",
            );
          } else slow(info);
        },
      },
    );
    log.info({ url, user: options.user }, "connected to NATS");
    conn.up();
    void nc.closed().then(() => conn.closed());
    void watchStatus(nc, log, conn);
    return nc;
  } catch (err) {
    conn.closed();
    if (err instanceof RetryStopped)
      throw new FizzError("UNAVAILABLE", "stopped while waiting for NATS", { cause: err.cause });
    throw err;
  }
}

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/**
 * Takes user, password and `?ca=<file>` out of a URL (nats.js ignores credentials in URLs). A
 * service user gets its own inbox prefix, matching the subscribe permission the server grants it.
 */
export function natsConnectionOptions(raw: string): NodeConnectionOptions {
  const u = new URL(raw);
  const user = u.username ? decodeURIComponent(u.username) : undefined;
  const pass = u.password ? decodeURIComponent(u.password) : undefined;
  const ca = u.searchParams.get("ca") ?? undefined;
  const server = `${u.protocol}//${u.host}`;
  return {
    servers: server,
    ...(user !== undefined ? { user } : {}),
    ...(pass !== undefined ? { pass } : {}),
    ...(ca !== undefined || u.protocol === "tls:" ? { tls: ca ? { caFile: ca } : {} } : {}),
    ...(user !== undefined && (SERVICE_USERS as readonly string[]).includes(user)
      ? { inboxPrefix: serviceInboxPrefix(user as ServiceUser) }
      : {}),
  };
}

/** Connection state per client, kept from status events (the client exposes no getter). */
const disconnected = new WeakSet<NatsConnection>();

async function watchStatus(
  nc: NatsConnection,
  log: Logger,
  conn: ConnectionTracker,
): Promise<void> {
  for await (const s of nc.status()) {
    if (s.type === "disconnect") {
      disconnected.add(nc);
      conn.down();
      log.warn("disconnected from NATS; reconnecting");
    } else if (s.type === "reconnect") {
      disconnected.delete(nc);
      conn.up();
      log.info("reconnected to NATS");
    } else if (s.type === "error") log.error({ err: String(s.error) }, "NATS error");
  }
}

export function natsConnected(nc: NatsConnection | undefined): boolean {
  return nc !== undefined && !nc.isClosed() && !disconnected.has(nc);
}

/**
 * Sends a request and decodes the reply; a remote error comes back as the FizzError it was. The
 * trace context (`opts.trace`, else the request scope's) travels in the message headers, so the
 * server's span and log lines join the caller's trace.
 */
export async function request<Req, Res, ReqIn, ResIn>(
  nc: NatsConnection,
  subject: string,
  contract: RpcContract<Req, Res, ReqIn, ResIn>,
  data: ReqIn,
  opts: {
    sender: string;
    timeoutMs: number;
    trace?: TraceContext | undefined;
    requestId?: string | undefined;
  },
): Promise<Res> {
  const scope = opts.trace === undefined ? currentScope() : undefined;
  const trace = opts.trace ?? scope?.trace;
  let msg: Msg;
  try {
    msg = await nc.request(subject, contract.request.encode(data, opts.sender), {
      timeout: opts.timeoutMs,
      ...(trace !== undefined
        ? { headers: putTrace(trace, opts.requestId ?? scope?.requestId) }
        : {}),
    });
  } catch (err) {
    const e = err as Error & { code?: string };
    const text = `${e.name} ${e.message} ${String(e.code)}`;
    if (/timeout/i.test(text)) {
      throw new FizzError("TIMEOUT", `no answer on ${subject} within ${opts.timeoutMs} ms`, {
        cause: err,
        retryable: true,
      });
    }
    // No responders: the service behind the subject is not running (yet).
    throw new FizzError("UNAVAILABLE", `nothing answers on ${subject}: ${e.message}`, {
      cause: err,
    });
  }
  return contract.reply.decode(msg.data).data;
}

export interface ServeOptions {
  sender: string;
  logger: Logger;
  /** Queue group so replicas share the work. */
  queue?: string;
  /** Name of the server span of a request that carries a trace (default: the subject). */
  spanName?: string;
}

/**
 * Answers requests on a subject. Malformed requests and handler failures are answered with a
 * typed error envelope, so the requester never waits for a timeout to learn what went wrong.
 */
export function serve<Req, Res, ReqIn, ResIn>(
  nc: NatsConnection,
  subject: string,
  contract: RpcContract<Req, Res, ReqIn, ResIn>,
  handler: (data: Req, msg: Msg) => Promise<ResIn>,
  opts: ServeOptions,
): Subscription {
  const log = opts.logger.child({ subject });
  return nc.subscribe(subject, {
    ...(opts.queue ? { queue: opts.queue } : {}),
    callback: (err, msg) => {
      if (err) {
        log.error({ err: err.message }, "subscription error");
        return;
      }
      const answer = async () => {
        try {
          const req = contract.request.decode(msg.data).data;
          const res = await handler(req, msg);
          msg.respond(contract.reply.encode(res, opts.sender));
        } catch (e) {
          const fe = FizzError.from(e);
          if (fe.code === "INTERNAL") log.error({ err: fe, cause: fe.cause }, "request failed");
          msg.respond(encodeError(fe, opts.sender));
          return fe;
        }
        return undefined;
      };
      // Only a request that carries a trace gets a span and a scope (its log lines carry the
      // trace id); the rest pay nothing.
      const received = msg.headers === undefined ? undefined : takeTrace(msg.headers);
      if (received?.trace === undefined) {
        void answer();
        return;
      }
      const span = tracer().startSpan(opts.spanName ?? subject, "server", received.trace);
      void runInScope({ trace: span.context, requestId: received.requestId }, answer).then((fe) => {
        if (fe !== undefined) span.fail(`${fe.code}: ${fe.message}`);
        span.end();
      });
    },
  });
}

/** Subscribes to events of one type; malformed events are logged and dropped at the boundary. */
export function listen<T, I>(
  nc: NatsConnection,
  subject: string,
  codec: Codec<T, I>,
  handler: (data: T, subject: string) => void | Promise<void>,
  opts: { logger: Logger; queue?: string },
): Subscription {
  const log = opts.logger.child({ subject });
  return nc.subscribe(subject, {
    ...(opts.queue ? { queue: opts.queue } : {}),
    callback: (err, msg) => {
      if (err) {
        log.error({ err: err.message }, "subscription error");
        return;
      }
      let data: T;
      try {
        data = codec.decode(msg.data).data;
      } catch (e) {
        log.warn(
          { err: (e as Error).message, subject: msg.subject },
          "dropped a malformed message",
        );
        return;
      }
      // Called here, in delivery order, not a microtask later: a request served on the same
      // connection (`serve` calls its handler at once) must find every event delivered before it
      // applied. The gateway answers the registry's update barrier from its tables; with the
      // event's handler deferred, a question that arrived right behind its event found the
      // tables without it and fetched the object again on every write.
      let done: void | Promise<void>;
      try {
        done = handler(data, msg.subject);
      } catch (e) {
        log.error({ err: e }, "event handler failed");
        return;
      }
      if (done instanceof Promise)
        done.catch((e: unknown) => log.error({ err: e }, "event handler failed"));
    },
  });
}

export function publish<T, I>(
  nc: NatsConnection,
  subject: string,
  codec: Codec<T, I>,
  data: I,
  sender: string,
): void {
  nc.publish(subject, codec.encode(data, sender));
}

export { Codecs };
