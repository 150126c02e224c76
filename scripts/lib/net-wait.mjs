// Ports and readiness for the launcher (platform.mjs): a free port, whether one is open, and
// polling a check until it holds or a deadline passes.
import net from "node:net";

/**
 * @param {string} [host]
 * @returns {Promise<number>}
 */
export function freePort(host = "127.0.0.1") {
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
