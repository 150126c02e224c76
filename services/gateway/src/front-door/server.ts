import { randomUUID } from "node:crypto";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { FizzError } from "@fizz/events";
import {
  childOf,
  createLogger,
  formatTraceparent,
  parseTraceparent,
  sleep,
  tracer,
  type Logger,
} from "@fizz/kit";
import { BodySource } from "./body";
import { scanRequestHeaders } from "./headers";
import { sendError } from "./http-errors";
import { lingerClose } from "./linger";
import type { FunctionLeases } from "./leases";
import { ProxyCall, type ProxyContext } from "./proxy";
import type { Router } from "./router";
import { ownFrontendAvailable } from "./own-parser";
import { ownSelfCheck, type SelfCheckResult } from "./own-selfcheck";
import { listenOwn } from "./own-server";
import { closeQueuedAnswers, watchSendProgress } from "./send-timeout";
import type { TrustedProxies } from "./trusted-proxies";
import type { ProxyServer, ServerLimits } from "./server-types";

export type { ProxyServer, ServerLimits } from "./server-types";

export interface HandlerOptions {
  ctx: ProxyContext;
  /** The current route table; undefined until the first registry list. */
  router: () => Router<FunctionLeases> | undefined;
  maxBodyBytes: number;
  /** A body that stalls this long while wanted is cut off (0 = never). */
  bodyIdleTimeoutMs?: number;
  /** Answers /healthz, /readyz, /metrics when no route claims the path; true when it did. */
  ops: (req: http.IncomingMessage, res: http.ServerResponse) => boolean;
  /** Peers whose X-Forwarded-Host/-Proto and Forwarded are passed on (FIZZ_TRUSTED_PROXIES). */
  trustedProxies?: TrustedProxies;
  /** `/async-function/...` (a reserved path space, like `/function/`): async-http.ts. */
  asyncFunction?: http.RequestListener;
}

/** The request entry point: route in memory, check the body size, hand over to a ProxyCall. */
export function createHandler(opts: HandlerOptions): http.RequestListener {
  const { ctx, maxBodyBytes } = opts;
  return (req, res) => {
    const startedAt = performance.now();
    const url = req.url ?? "/";
    const method = req.method ?? "GET";
    const scanned = scanRequestHeaders(req.rawHeaders);
    const requestId = scanned.requestId ?? randomUUID();
    if (opts.asyncFunction !== undefined && url.startsWith("/async-function/")) {
      opts.asyncFunction(req, res);
      return;
    }

    const router = opts.router();
    const match = router?.match(method, scanned.host, url);
    if (!match) {
      if (opts.ops(req, res)) return;
      const err = router
        ? new FizzError("NO_ROUTE", `no route for ${method} ${url.split("?")[0]}`)
        : new FizzError("UNAVAILABLE", "the gateway is still loading its routes");
      ctx.metrics.observe(undefined, sendError(res, err, requestId), startedAt);
      return;
    }
    if (Number.isNaN(scanned.contentLength)) {
      const err = new FizzError(
        "VALIDATION_FAILED",
        "content-length: must be a non-negative integer",
        { field: "content-length" },
      );
      ctx.metrics.observe(match.target, sendError(res, err, requestId, true), startedAt);
      lingerClose(req);
      return;
    }
    if (scanned.contentLength > maxBodyBytes) {
      const err = new FizzError(
        "PAYLOAD_TOO_LARGE",
        `request body of ${scanned.contentLength} bytes exceeds ${maxBodyBytes}`,
        {
          field: "body",
        },
      );
      ctx.metrics.observe(match.target, sendError(res, err, requestId, true), startedAt);
      lingerClose(req);
      return;
    }
    const body =
      scanned.chunked || scanned.contentLength > 0
        ? new BodySource(
            req,
            maxBodyBytes,
            undefined,
            opts.bodyIdleTimeoutMs ?? 0,
            scanned.chunked ? -1 : scanned.contentLength,
          )
        : null;

    const h = scanned.headers;
    const remote = clientAddress(req);
    // Functions build absolute links from these (Express's req.hostname, Flask's url_for): from a
    // client they would be its choice (host-header poisoning of a reset link), so only a trusted
    // proxy's are kept; otherwise the Host and scheme of the connection the gateway accepted.
    // X-Forwarded-For is always appended to: runtimes take its last entry, the gateway's own.
    const trusted = opts.trustedProxies?.(remote) === true;
    const scheme = (req.socket as { encrypted?: boolean }).encrypted === true ? "https" : "http";
    const forwardedHost = trusted ? (scanned.forwardedHost ?? scanned.host) : scanned.host;
    if (forwardedHost !== undefined) h.push("x-forwarded-host", forwardedHost);
    if (trusted && scanned.forwarded !== undefined) h.push("forwarded", scanned.forwarded);
    h.push(
      "x-forwarded-for",
      scanned.forwardedFor === undefined ? remote : `${scanned.forwardedFor}, ${remote}`,
      "x-forwarded-proto",
      trusted ? (scanned.forwardedProto ?? scheme) : scheme,
      "x-request-id",
      requestId,
      "x-fizz-function-name",
      match.target.name,
      "x-fizz-function-namespace",
      match.target.namespace,
    );
    const params = match.params;
    if (params)
      for (let i = 0; i + 1 < params.length; i += 2)
        h.push(`x-fizz-params-${params[i]}`, params[i + 1] as string);

    // The client's trace, if it sent a valid one, else a new one. Off (no export), the gateway's
    // span is only an id: the function gets it as its parent in a header set once here. Recording,
    // each attempt gets its own client span and header (proxy.ts).
    const incoming = parseTraceparent(scanned.traceparent, scanned.tracestate);
    const t = tracer();
    const span = t.recording
      ? t.startSpan("gateway.request", "server", incoming, {
          "http.request.method": method,
          "url.path": url.split("?")[0] ?? url,
          "fizz.function": match.target.key,
          "fizz.request_id": requestId,
        })
      : undefined;
    const trace = span === undefined ? childOf(incoming) : span.context;
    if (span === undefined) {
      h.push("traceparent", formatTraceparent(trace));
      if (trace.traceState !== undefined) h.push("tracestate", trace.traceState);
    }

    new ProxyCall(
      ctx,
      req,
      res,
      match.target,
      match.url,
      requestId,
      h,
      body,
      startedAt,
      trace,
      span,
    ).start();
  };
}

function clientAddress(req: http.IncomingMessage): string {
  const a = req.socket.remoteAddress ?? "";
  return a.startsWith("::ffff:") ? a.slice(7) : a;
}

export async function listenProxy(
  handler: http.RequestListener,
  host: string,
  port: number,
  active: { count: number },
  limits: ServerLimits,
  opts: {
    /** Where a failed self-check is told (the gateway's own logger when not given). */
    logger?: Logger;
    /** The own front end's start-up check (own-selfcheck.ts); tests give a failing one. */
    selfCheck?: () => Promise<SelfCheckResult>;
  } = {},
): Promise<ProxyServer> {
  const requestTimeout =
    limits.requestTimeoutMs === 0 ? 0 : Math.max(limits.requestTimeoutMs, limits.headersTimeoutMs);
  if (limits.frontend === "own") {
    const log = () => opts.logger ?? createLogger("gateway");
    if (!ownFrontendAvailable) {
      log().warn(
        "the own front end (FIZZ_GATEWAY_FRONTEND=own) needs Node's llhttp binding, which this " +
          "Node does not have: serving on node's http server instead",
      );
    } else {
      const check = await (opts.selfCheck ?? ownSelfCheck)();
      if (check.ok) return listenOwn(handler, host, port, active, limits, requestTimeout);
      log().warn(
        { failed: check.failed, ms: Math.round(check.ms) },
        "the own front end (FIZZ_GATEWAY_FRONTEND=own) failed its start-up self-check on this " +
          "Node: serving on node's http server instead",
      );
    }
  }
  const checkEveryMs = Math.min(1000, Math.max(100, limits.headersTimeoutMs / 4));
  const server = http.createServer(
    {
      // keepAliveTimeout above a typical load balancer's idle timeout avoids the race where the
      // LB reuses a connection the gateway is just closing.
      keepAliveTimeout: limits.keepAliveTimeoutMs,
      noDelay: true,
      // A slow client (slowloris) holds a socket until this; Node checks it only every
      // connectionsCheckingInterval, so that runs often enough for the limit to mean something.
      headersTimeout: limits.headersTimeoutMs,
      requestTimeout,
      connectionsCheckingInterval: checkEveryMs,
    },
    closeQueuedAnswers(handler),
  );
  // Past this, new connections are closed at accept: memory stays bounded under a flood, and
  // connections already open keep being served.
  server.maxConnections = limits.maxConnections;
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    // A burst opens connections faster than one event loop accepts them; Node's default backlog
    // (511) overflows, and the kernel's SYN retry then delays those clients by a second or more.
    // The kernel caps this at net.core.somaxconn.
    server.listen({ port, host, backlog: 4096 }, () => {
      server.off("error", reject);
      resolve();
    });
  });
  // A client that stops taking its answer is cut (send-timeout.ts), as on the own front end.
  const stopSendTimeout = watchSendProgress(server, limits.keepAliveTimeoutMs, checkEveryMs);
  return {
    port: (server.address() as AddressInfo).port,
    drain: async (timeoutMs) => {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      const deadline = Date.now() + timeoutMs;
      // Connections finishing their last request become idle; close them as they do.
      while (active.count > 0 && Date.now() < deadline) {
        server.closeIdleConnections();
        await sleep(25);
      }
      server.closeAllConnections();
      stopSendTimeout();
      await closed;
    },
  };
}
