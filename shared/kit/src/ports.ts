import { readFileSync } from "node:fs";
import net from "node:net";

/**
 * A port free on `host` right now, picked below the kernel's ephemeral range: a port the kernel
 * picks (listen on 0) comes from that range, from which it also takes the local ports of outgoing
 * connections, so one made meanwhile (any NATS or Redis client on the host) could hold it by the
 * time the caller binds it. Another process may still take it first; callers treat a failed bind
 * as retryable. Falls back to the kernel's pick when the range leaves no room below it.
 */
export async function freePort(host = "127.0.0.1"): Promise<number> {
  const below = ephemeralLow() - 1;
  if (below - LOW_PORT >= 1000) {
    for (let i = 0; i < 50; i++) {
      const port = LOW_PORT + Math.floor(Math.random() * (below - LOW_PORT + 1));
      if (await bindable(port, host)) return port;
    }
  }
  return kernelPort(host);
}

/** The lowest port freePort picks from: above the usual fixed service ports. */
const LOW_PORT = 10000;

/** The ephemeral range's low end (Linux), or the IANA default. */
function ephemeralLow(): number {
  try {
    const low = Number(
      readFileSync("/proc/sys/net/ipv4/ip_local_port_range", "utf8").split(/\s+/)[0],
    );
    return Number.isInteger(low) && low > 0 ? low : 49152;
  } catch {
    return 49152;
  }
}

function bindable(port: number, host: string): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = net.createServer();
    srv.once("error", () => resolve(false));
    srv.listen(port, host, () => srv.close(() => resolve(true)));
  });
}

function kernelPort(host: string): Promise<number> {
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
