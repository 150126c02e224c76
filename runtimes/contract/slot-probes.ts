// Probes of when a runtime frees a call's concurrency slot, for a language's own tests: the
// contract (docs/runtime-contract.md, "User traffic") wants it free by the time the client has
// the answer, i.e. freed before the answer's last write. The shared suite only sends calls right
// after an answer, which a runtime freeing just after its write passes by a hair; these probes
// make that gap last, with functions only some languages can write (a handler that keeps running
// after its whole answer is out) or answers a runtime writes while the slot is already free (a
// large answer its client does not read yet). Run with concurrency 1 (one in flight, one queued).
import http from "node:http";
import net from "node:net";
import { type HttpResult, type Runtime, request } from "./harness.js";

/** A call's status, or 0 when it failed or was still unanswered after `ms`. */
async function statusWithin(call: Promise<HttpResult>, ms: number): Promise<number> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<number>((resolve) => (timer = setTimeout(() => resolve(0), ms)));
  try {
    return await Promise.race([call.then((r) => r.status).catch(() => 0), late]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Calls `first` on one kept-alive connection and, the moment its answer arrives, `next` twice on
 * two others (opened before). Resolves with the first answer and the two statuses: [200, 200]
 * when the slot was free (one runs, one queued); a slot still held shows as a 429.
 */
export async function callsRightAfter(
  rt: Runtime,
  headers: Record<string, string>,
  first: string,
  next: string,
): Promise<{ first: HttpResult; next: number[] }> {
  const agents = [0, 1, 2].map(() => new http.Agent({ keepAlive: true, maxSockets: 1 }));
  const [a, b, c] = agents as [http.Agent, http.Agent, http.Agent];
  try {
    await Promise.all(agents.map((agent) => request(rt.url, { path: "/healthz", agent })));
    const answer = await request(rt.url, { path: first, headers, agent: a });
    const statuses = await Promise.all(
      [b, c].map((agent) => statusWithin(request(rt.url, { path: next, headers, agent }), 10_000)),
    );
    return { first: answer, next: statuses };
  } finally {
    for (const agent of agents) agent.destroy();
  }
}

/**
 * Calls `big` (an answer far larger than the socket buffers) on a raw connection that stops
 * reading at the answer's first bytes, so its last write waits on this client; then calls `next`
 * twice on other connections, and only then reads the big answer to its end. Resolves with the
 * two statuses ([200, 200] when the slot was freed before that write; a slot freed after it gives
 * 429 and a call queued behind the stalled one, reported as 0) and the big answer's byte count.
 */
export async function callsDuringSlowRead(
  rt: Runtime,
  headers: Record<string, string>,
  big: string,
  next: string,
): Promise<{ next: number[]; bodyBytes: number; status: string }> {
  const { hostname, port } = new URL(rt.url);
  const socket = net.connect(Number(port), hostname);
  const lines = Object.entries(headers).map(([k, v]) => `${k}: ${v}\r\n`);
  socket.write(`GET ${big} HTTP/1.1\r\nHost: ${hostname}\r\n${lines.join("")}\r\n`);
  const chunks: Buffer[] = [];
  try {
    await new Promise<void>((resolve, reject) => {
      socket.once("error", reject);
      socket.once("data", (chunk: Buffer) => {
        socket.pause();
        chunks.push(chunk);
        resolve();
      });
    });
    const nextCalls = [0, 1].map(() =>
      statusWithin(request(rt.url, { path: next, headers }), 3_000),
    );
    const statuses = await Promise.all(nextCalls);
    // The head comes whole in the first bytes; the body is only counted.
    const first = Buffer.concat(chunks);
    const end = first.indexOf("\r\n\r\n");
    const head = first.subarray(0, Math.max(end, 0)).toString("latin1");
    const length = Number(/\r\ncontent-length: *(\d+)/i.exec(head)?.[1] ?? -1);
    let bodyBytes = end < 0 ? 0 : first.length - end - 4;
    if (end >= 0 && length >= 0 && bodyBytes < length) {
      await new Promise<void>((resolve, reject) => {
        socket.on("data", (chunk: Buffer) => {
          bodyBytes += chunk.length;
          if (bodyBytes >= length) resolve();
        });
        socket.on("end", resolve);
        socket.on("error", reject);
        socket.resume();
      });
    }
    return { next: statuses, bodyBytes, status: head.slice(0, head.indexOf("\r\n")) };
  } finally {
    socket.destroy();
  }
}
