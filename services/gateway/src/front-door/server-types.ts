// What listenProxy returns and takes, apart from server.ts: own-server.ts needs them too, and an
// import of server.ts from there would close a cycle (server.ts picks own-server.ts).

export interface ProxyServer {
  port: number;
  /** Stops accepting, lets in-flight requests finish for up to `timeoutMs`, then cuts the rest. */
  drain(timeoutMs: number): Promise<void>;
}

/** Limits against clients that hold connections or trickle bytes (config.ts). */
export interface ServerLimits {
  maxConnections: number;
  headersTimeoutMs: number;
  /** 0: no limit on the whole request (a long upload streaming to a function). */
  requestTimeoutMs: number;
  keepAliveTimeoutMs: number;
  /**
   * `own`: the gateway's own HTTP/1.1 server on node's llhttp (own-server.ts) instead of
   * http.Server (FIZZ_GATEWAY_FRONTEND). A Node without the parser binding, or one where the
   * start-up self-check fails (own-selfcheck.ts), serves on `node` with a warning.
   */
  frontend?: "node" | "own";
}
