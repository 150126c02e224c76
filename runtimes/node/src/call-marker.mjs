// @ts-check
/**
 * Call markers: which call a line of the function's stdout or stderr belongs to. The format is
 * re-stated from shared/events/src/logs.ts (this runtime imports nothing of the platform's): a
 * line `ESC _ fizz:call=<request id> ESC \` of its own on a stream before a call's first output
 * on that stream, and the same with an empty id before output that belongs to no call. The
 * poolkeeper removes those lines and tags the lines after them with the request id.
 *
 * The writer's call comes from its async context (AsyncLocalStorage), so interleaved output of
 * concurrent calls is marked call by call, and a timer or promise the function left behind writes
 * as "no call" once the call is over (the call's id is cleared at its end).
 *
 * Lazy: a stream gets a marker only when the call writing differs from the one it last marked
 * (and a clearing one when the call it names ends, so output that reaches the fd around the
 * wrapper afterwards is no call's), and async context is tracked only once something is written while a call runs. In Node 20 an
 * AsyncLocalStorage in use makes every async resource of the process pay (about 6 µs of CPU per
 * HTTP call here, bench/call-marker.mjs), so a function that never prints during its calls never
 * turns it on. Until then calls are only counted: the first output during a call belongs to the
 * one call running (with several running it is marked as no call's), and that call goes on with
 * its context from there (enterWith).
 */
import { AsyncLocalStorage } from "node:async_hooks";

const MARKER_PREFIX = "\u001b_fizz:call=";
const MARKER_SUFFIX = "\u001b\\";
/** What the poolkeeper accepts as a request id in a marker (parseCallMarker in logs.ts). */
const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;
/** String encodings in which a chunk is not its own text: the marker goes in a write of its own. */
const ENCODED = new Set(["hex", "base64", "base64url"]);
const LF = 10;

/**
 * A call: `id` is "" when it has no usable id, and once it is over; `tracked` when it runs in its
 * own async context.
 * @typedef {{ id: string, tracked: boolean }} Call
 */

/** @type {AsyncLocalStorage<Call>} */
const calls = new AsyncLocalStorage();
/** Something was written while a call ran: calls carry their async context from then on. */
let tracking = false;
/** Calls with an id started before that, still running. */
/** @type {Set<Call>} */
const untracked = new Set();
/**
 * The marked streams: the call each last marked, and the way to mark it no call's.
 * @type {{ id: string, release(): void }[]}
 */
const marked = [];

/**
 * A call begins: its request id is the X-Request-Id header. An absent or odd id marks nothing:
 * the call's output is logged as belonging to no call.
 * @param {string | string[] | undefined} requestId
 * @returns {Call}
 */
export function openCall(requestId) {
  const id = typeof requestId === "string" && REQUEST_ID.test(requestId) ? requestId : "";
  /** @type {Call} */
  const call = { id, tracked: tracking };
  // A call without an id writes as no call's whatever context it runs in: it never needs tracking.
  if (!tracking && id !== "") untracked.add(call);
  return call;
}

/**
 * Runs the call's code, in its own async context once tracking is on.
 * @template T
 * @param {Call} call
 * @param {() => Promise<T>} fn
 * @returns {Promise<T>}
 */
export function inCall(call, fn) {
  return call.tracked ? calls.run(call, fn) : fn();
}

/**
 * The call is over (its answer sent): what its timers or promises print later is none's.
 * @param {Call} call
 */
export function closeCall(call) {
  const { id } = call;
  call.id = "";
  untracked.delete(call);
  // A stream still marked with the call goes back to no call's: what reaches its fd without
  // going through write (a child process with inherited stdio, pino's fs writes, a crash's stack
  // trace) after the answer would otherwise be tagged with this call. Only calls that printed pay.
  if (id !== "") for (const stream of marked) if (stream.id === id) stream.release();
}

/** The id of the call writing now; "" for none. */
function writer() {
  const call = calls.getStore();
  if (call) return call.id;
  if (untracked.size === 0) return ""; // no call runs: whatever writes is none's
  tracking = true;
  if (untracked.size > 1) return ""; // which of them writes cannot be told any more
  const [only] = untracked;
  if (!only) return "";
  untracked.delete(only);
  calls.enterWith(only);
  return only.id;
}

/** The streams' "error": a write that failed (a pipe whose reader is gone) only loses its bytes. */
function ignoreWriteError() {}

/**
 * Makes `stream.write` print a marker line first whenever the writer's call is not the one the
 * stream last marked; console.* write through it. Installed once per stream.
 *
 * The stream also gets an "error" listener for good: once its reader is gone (the process
 * backend's pipes after the poolkeeper died, while the instance drains its calls) every write
 * fails with EPIPE and the stream emits "error", thrown without a listener. Node's console guards
 * only the first such write (its guard is skipped while the stream's last error counts as
 * emitted), and the markers written at a call's end have no guard: either took the instance and
 * the calls in flight down on the next line printed.
 * @param {NodeJS.WriteStream} stream
 */
export function markCalls(stream) {
  stream.on("error", ignoreWriteError);
  const write = stream.write;
  /** The last write did not end its line: a marker must not be glued to it. */
  let lineOpen = false;
  const state = {
    /** The call the stream's last marker named; "" at start: output then belongs to no call. */
    id: "",
    release() {
      write.call(stream, `${lineOpen ? "\n" : ""}${MARKER_PREFIX}${MARKER_SUFFIX}\n`);
      state.id = "";
      lineOpen = false;
    },
  };
  marked.push(state);
  /**
   * @this {NodeJS.WriteStream}
   * @param {string | Uint8Array} chunk
   * @param {BufferEncoding | ((err?: Error | null) => void)} [encoding]
   * @param {(err?: Error | null) => void} [callback]
   */
  function markedWrite(chunk, encoding, callback) {
    const length = chunk.length;
    if (length === 0) return write.call(this, chunk, /** @type {any} */ (encoding), callback);
    const id = writer();
    const encoded =
      typeof chunk === "string" && typeof encoding === "string" && ENCODED.has(encoding);
    if (id !== state.id) {
      state.id = id;
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
