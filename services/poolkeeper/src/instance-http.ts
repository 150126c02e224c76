import { Agent, request, type ClientRequest, type OutgoingHttpHeaders } from "node:http";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";

/**
 * The poolkeeper's HTTP client for its instances (the health probe and POST /v2/specialize), on
 * Node's own `http`: its parser is the native llhttp binding the ops server already loaded. undici
 * compiled its WebAssembly parser at the first cold start after every poolkeeper start (~4.6 ms
 * of CPU and ~3.5 MB of the binary's compiler pages), and took more CPU per new connection: every
 * specialize is one, since each instance is specialized once.
 */
export type InstanceAgent = Agent;

/**
 * Keep-alive, so a health probe's connection is the specialize's. An idle connection is closed
 * after 4 s: the runtimes close theirs after 5 s (Node's default), and the poolkeeper must be the
 * one to close first, never write into a socket the instance is closing.
 */
export function instanceAgent(idleMs = 4_000): InstanceAgent {
  // Node's agent destroys only a free socket on this timeout: a request in flight (a slow load)
  // is bounded by its own timeoutMs alone.
  return new Agent({ keepAlive: true, timeout: idleMs });
}

export interface InstanceReply {
  status: number;
  /** The body as UTF-8. */
  text: string;
}

export interface InstanceRequest {
  method: "GET" | "POST";
  headers?: OutgoingHttpHeaders;
  /** A string or bytes, or a stream of chunks sent as they come (its size in content-length). */
  body?: string | Buffer | AsyncIterable<Uint8Array>;
  /** For the whole exchange: connecting, sending, the answer's head and its body. */
  timeoutMs: number;
  /**
   * An answer longer than this fails the call: what answers is an instance that may be running a
   * user's code, so its reply must not be able to fill the poolkeeper's memory.
   */
  maxReplyBytes: number;
  /**
   * false: the connection is closed after the answer instead of kept for another request (the
   * specialize: nothing more is sent to an instance that runs a user's code from then on).
   */
  keepAlive?: boolean;
}

/** How long a connection may take to open: an instance is local or a pod on the cluster network. */
export const CONNECT_TIMEOUT_MS = 2_000;

/** Raised when the exchange took longer than its `timeoutMs`. */
export class InstanceTimeout extends Error {
  override name = "TimeoutError";
}

/**
 * One request to an instance (`address` is its `http://host:port`). Rejects on a refused or broken
 * connection, a timeout, a reply over its cap, or a failed body stream (with that stream's error);
 * an answer that came before a streamed body was sent whole still counts (the runtime refused it
 * early), and the rest of the body is dropped.
 */
export function instanceRequest(
  agent: InstanceAgent,
  address: string,
  path: string,
  o: InstanceRequest,
): Promise<InstanceReply> {
  const url = new URL(address);
  if (url.protocol !== "http:")
    return Promise.reject(new Error(`instance address ${address} is not http://`));
  return new Promise<InstanceReply>((resolve, reject) => {
    let settled = false;
    let req: ClientRequest | undefined;
    const finish = (err: Error | undefined, reply?: InstanceReply) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      // Also after an early answer: the rest of a streamed body is not sent, and a connection
      // left mid-request is never reused.
      if (req && (err || !req.writableFinished)) req.destroy();
      if (err) reject(err);
      else resolve(reply as InstanceReply);
    };
    const timer = setTimeout(
      () => finish(new InstanceTimeout(`no answer within ${o.timeoutMs} ms`)),
      o.timeoutMs,
    );
    const headers: OutgoingHttpHeaders = { ...o.headers };
    if (o.keepAlive === false) headers.connection = "close";
    if (typeof o.body === "string" || Buffer.isBuffer(o.body))
      headers["content-length"] = Buffer.byteLength(o.body);
    try {
      req = request(
        {
          agent,
          host: url.hostname.replace(/^\[|\]$/g, ""),
          port: url.port,
          path,
          method: o.method,
          headers,
        },
        (res) => {
          const chunks: Buffer[] = [];
          let size = 0;
          res.on("data", (chunk: Buffer) => {
            size += chunk.length;
            if (size > o.maxReplyBytes) {
              finish(new Error(`the instance's answer is over ${o.maxReplyBytes} bytes`));
              res.destroy();
              return;
            }
            chunks.push(chunk);
          });
          res.once("end", () =>
            finish(undefined, {
              status: res.statusCode ?? 0,
              text: Buffer.concat(chunks).toString("utf8"),
            }),
          );
          res.on("error", (err) => finish(err));
          // A connection closed mid-answer ends the reply with 'close' and no 'end'.
          res.once("close", () => {
            if (!res.complete) finish(new Error("the instance closed the connection mid-answer"));
          });
        },
      );
    } catch (err) {
      // Bad header values throw here, before anything is sent.
      finish(err as Error);
      return;
    }
    req.on("error", (err) => finish(err));
    req.once("socket", (socket) => {
      if (!socket.connecting) return;
      const t = setTimeout(
        () => finish(new Error(`could not connect within ${CONNECT_TIMEOUT_MS} ms`)),
        CONNECT_TIMEOUT_MS,
      );
      socket.once("connect", () => clearTimeout(t));
      socket.once("close", () => clearTimeout(t));
    });
    const body = o.body;
    if (body === undefined || typeof body === "string" || Buffer.isBuffer(body)) {
      req.end(body);
      return;
    }
    // Backpressure from the socket paces the source; a source that fails destroys the request
    // with its own error, which is what the caller is told (unless the answer was in already).
    const length = Number(headers["content-length"]);
    pipeline(Readable.from(exactly(body, length), { objectMode: false }), req).catch((err: Error) =>
      finish(err),
    );
  });
}

/**
 * The stream, checked against the content-length it is sent under: a chunk past it fails the
 * request before it is written (the instance would read the excess as a request of its own), and
 * so does an end short of it. (Node's own `strictContentLength` throws from inside the pipe, out
 * of reach of any handler.)
 */
async function* exactly(
  body: AsyncIterable<Uint8Array>,
  length: number,
): AsyncGenerator<Uint8Array> {
  if (!Number.isSafeInteger(length) || length < 0)
    throw new Error("a streamed body needs its content-length");
  let sent = 0;
  for await (const chunk of body) {
    sent += chunk.length;
    if (sent > length) throw new Error(`the body is longer than its content-length of ${length}`);
    yield chunk;
  }
  if (sent !== length) throw new Error(`the body is shorter than its content-length of ${length}`);
}
