// @ts-check
/**
 * Call markers: which call a line of the function's stdout or stderr belongs to. The format is
 * re-stated from shared/events/src/logs.ts (this runtime imports nothing of the platform's): a
 * line `ESC _ fizz:call=<request id> ESC \` of its own on a stream before a call's first output
 * on that stream, and the same with an empty id before output that belongs to no call. The
 * poolkeeper removes those lines and tags the lines after them with the request id.
 *
 * Lazy: a call that prints nothing costs one AsyncLocalStorage.run, and a stream gets a marker
 * only when the call writing differs from the one it last marked. With concurrency > 1 the
 * writer's call comes from its async context, so interleaved output of concurrent calls is marked
 * call by call; a timer or promise the function left behind writes as "no call" once the call is
 * over (its store's id is cleared at the end).
 */
import { AsyncLocalStorage } from "node:async_hooks";

const MARKER_PREFIX = "\u001b_fizz:call=";
const MARKER_SUFFIX = "\u001b\\";
/** What the poolkeeper accepts as a request id in a marker (parseCallMarker in logs.ts). */
const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;
/** String encodings in which a chunk is not its own text: the marker goes in a write of its own. */
const ENCODED = new Set(["hex", "base64", "base64url"]);
const LF = 10;

/** @typedef {{ id: string }} Call the id is "" when the call has no usable id, and once it is over */

/** @type {AsyncLocalStorage<Call>} */
const calls = new AsyncLocalStorage();

/**
 * Runs `fn` as the call `requestId` (the X-Request-Id header) and ends the call when the promise
 * settles. An absent or odd id marks nothing: its output is logged as belonging to no call.
 * @template T
 * @param {string | string[] | undefined} requestId
 * @param {() => Promise<T>} fn
 * @returns {Promise<T>}
 */
export function runCall(requestId, fn) {
  /** @type {Call} */
  const call = {
    id: typeof requestId === "string" && REQUEST_ID.test(requestId) ? requestId : "",
  };
  return calls.run(call, fn).finally(() => (call.id = ""));
}

/**
 * Makes `stream.write` print a marker line first whenever the writer's call is not the one the
 * stream last marked; console.* write through it. Installed once per stream.
 * @param {NodeJS.WriteStream} stream
 */
export function markCalls(stream) {
  const write = stream.write;
  /** The call the stream's last marker named; "" at start: output then belongs to no call. */
  let marked = "";
  /** The last write did not end its line: a marker must not be glued to it. */
  let lineOpen = false;
  /**
   * @this {NodeJS.WriteStream}
   * @param {string | Uint8Array} chunk
   * @param {BufferEncoding | ((err?: Error | null) => void)} [encoding]
   * @param {(err?: Error | null) => void} [callback]
   */
  function markedWrite(chunk, encoding, callback) {
    const length = chunk.length;
    if (length === 0) return write.call(this, chunk, /** @type {any} */ (encoding), callback);
    const id = calls.getStore()?.id ?? "";
    const encoded =
      typeof chunk === "string" && typeof encoding === "string" && ENCODED.has(encoding);
    if (id !== marked) {
      marked = id;
      const marker = `${lineOpen ? "\n" : ""}${MARKER_PREFIX}${id}${MARKER_SUFFIX}\n`;
      // One write when the chunk is text; the stream keeps the order of separate writes anyway.
      if (typeof chunk === "string" && !encoded) chunk = marker + chunk;
      else write.call(this, marker);
    }
    lineOpen =
      typeof chunk === "string"
        ? encoded
          ? Buffer.from(chunk, /** @type {BufferEncoding} */ (encoding)).at(-1) !== LF
          : chunk.charCodeAt(chunk.length - 1) !== LF
        : chunk[length - 1] !== LF;
    return write.call(this, chunk, /** @type {any} */ (encoding), callback);
  }
  stream.write = /** @type {typeof stream.write} */ (markedWrite);
}
