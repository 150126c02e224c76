// Ports and readiness for the launcher (platform.mjs): a free port, whether one is open, and
// polling a check until it holds or a deadline passes.
import { readFileSync } from "node:fs";
import net from "node:net";

/**
 * A port free on `host` now, picked below the kernel's ephemeral range: a port the kernel picks
 * (listen on 0) comes from that range, from which it also takes the local ports of outgoing
 * connections, so a service connecting to NATS meanwhile could hold it by the time another binds
 * it (seen: a service exiting with EADDRINUSE at start). Falls back to the kernel's pick when the
 * range leaves no room below it.
 * @param {string} [host]
 * @returns {Promise<number>}
 */
export async function freePort(host = "127.0.0.1") {
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

// Ports this process handed out lately, and when: picked free is not bound yet, so two picks
// before the first bind could return the same port (a service then exits with EADDRINUSE at
// start). The same map as @fizz/kit's freePort (shared/kit/src/ports.ts), by its global name:
// the e2e tests pick with both in one process.
const HANDED_OUT_KEY = Symbol.for("fizz.freePort.handedOut");
const globals = /** @type {Record<symbol, Map<number, number> | undefined>} */ (
  /** @type {unknown} */ (globalThis)
);
const handedOut = (globals[HANDED_OUT_KEY] ??= new Map());
const HANDED_OUT_MS = 10 * 60_000;

/** @param {number} port */
function recentlyHandedOut(port) {
  const at = handedOut.get(port);
  return at !== undefined && Date.now() - at < HANDED_OUT_MS;
}

/** @param {number} port */
function handOut(port) {
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
function ephemeralLow() {
  try {
    const low = Number(
      readFileSync("/proc/sys/net/ipv4/ip_local_port_range", "utf8").split(/\s+/)[0],
    );
    return Number.isInteger(low) && low > 0 ? low : 49152;
  } catch {
    return 49152;
  }
}

/**
 * @param {number} port
 * @param {string} host
 * @returns {Promise<boolean>}
 */
function bindable(port, host) {
  return new Promise((resolve) => {
    const srv = net.createServer();
    srv.once("error", () => resolve(false));
    srv.listen(port, host, () => srv.close(() => resolve(true)));
  });
}

/**
 * @param {string} host
 * @returns {Promise<number>}
 */
function kernelPort(host) {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once("error", reject);
    srv.listen(0, host, () => {
      const address = srv.address();
      // Listening on a TCP host gives an AddressInfo (a string is a pipe's path).
      if (address === null || typeof address === "string")
        return reject(new Error(`no TCP port from ${host}`));
      srv.close(() => resolve(address.port));
    });
  });
}

/**
 * @param {number} port
 * @param {string} [host]
 * @returns {Promise<boolean>}
 */
export function portOpen(port, host = "127.0.0.1") {
  return new Promise((resolve) => {
    const s = net.connect({ port, host });
    s.once("connect", () => (s.destroy(), resolve(true)));
    s.once("error", () => resolve(false));
  });
}

/**
 * @param {() => Promise<boolean>} check
 * @param {number} timeoutMs
 * @param {string} what  named in the timeout error
 */
export async function waitUntil(check, timeoutMs, what) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check().catch(() => false)) return;
    if (Date.now() > deadline)
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/**
 * @param {string} url  a readiness endpoint
 * @returns {Promise<boolean>}
 */
export async function ready(url) {
  const res = await fetch(url, { signal: AbortSignal.timeout(1000) });
  await res.arrayBuffer();
  return res.ok;
}
