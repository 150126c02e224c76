import net from "node:net";

/**
 * A port free on `host` right now: the kernel picks it, we close it and hand it on. Another
 * process may take it before the caller binds; callers treat a failed bind as retryable.
 */
export function freePort(host = "127.0.0.1"): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once("error", reject);
    srv.listen(0, host, () => {
      const addr = srv.address();
      srv.close(() =>
        typeof addr === "object" && addr ? resolve(addr.port) : reject(new Error("no free port")),
      );
    });
  });
}
