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
      if (recentlyHandedOut(port)) continue;
      // Marked before the check awaits, so a concurrent call cannot pick it meanwhile; a port
      // found taken stays marked (harmless: something holds it).
      handOut(port);
      if (await bindable(port, host)) return port;
    }
  }
  for (let i = 0; i < 50; i++) {
    const port = await kernelPort(host);
    if (!recentlyHandedOut(port)) return handOut(port);
  }
  return handOut(await kernelPort(host));
}

const HANDED_OUT_KEY = Symbol.for("fizz.freePort.handedOut");

/**
 * Ports this process handed out lately, and when. A port is free when picked, not when bound: a
 * caller picking several (a platform's services, a pool's instances) binds them later, so
 * without this two picks could return the same port, both still free, and the second to bind
 * fails with EADDRINUSE (seen: a launcher's service exiting at start, ~0.1% per pair of ports
 * over 22,000). Kept for HANDED_OUT_MS, long enough for any caller to bind. One map per process,
 * shared by name with the launcher's copy (scripts/lib/net-wait.mjs): the e2e tests pick ports
 * with both in one process.
 */
const handedOut: Map<number, number> = ((globalThis as Record<symbol, unknown>)[HANDED_OUT_KEY] ??=
  new Map<number, number>()) as Map<number, number>;
const HANDED_OUT_MS = 10 * 60_000;

function recentlyHandedOut(port: number): boolean {
  const at = handedOut.get(port);
  return at !== undefined && Date.now() - at < HANDED_OUT_MS;
}

function handOut(port: number): number {
  const now = Date.now();
  // Insertion order is age order (a re-handed port is deleted first): prune from the front.
  for (const [p, at] of handedOut) {
    if (now - at < HANDED_OUT_MS) break;
    handedOut.delete(p);
  }
  handedOut.delete(port);
  handedOut.set(port, now);
  return port;
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
