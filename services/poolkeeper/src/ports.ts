import net from "node:net";

/**
 * A port that is free on 127.0.0.1 right now. Another process may take it before the instance
 * binds; the instance then exits, spawn() fails and the pool retries, so the race costs a retry.
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
