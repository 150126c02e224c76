/**
 * Function logs (issue 14): what a log line on the bus looks like, where lines are kept, and the
 * call marker runtimes print so a line can be tagged with the request it belongs to.
 *
 * Imports nothing: the Node runtime (dependency-free) and other languages re-state the marker
 * format, and the runtime contract suite checks they print exactly this.
 */

/** `stdout`/`stderr` are the function's own; `system` is the platform speaking in the stream. */
export const LogStreams = ["stdout", "stderr", "system"] as const;
export type LogStream = (typeof LogStreams)[number];

/**
 * The JetStream stream that keeps function log lines (subjects `<prefix>.logs.<ns>.<fn>`). The
 * per-subject cap is per function, so one chatty function evicts only its own old lines. Limits
 * are defaults; the poolkeeper (which creates the stream) takes overrides from its config.
 */
export const LOG_STREAM = {
  name: "FIZZ_LOGS",
  storage: "file",
  maxAgeMs: 72 * 3600_000,
  maxBytes: 1024 * 1024 * 1024,
  maxMsgsPerSubject: 20_000,
  /** Longest line kept as one message; longer lines are cut (and marked) by the capturer. */
  maxLineBytes: 16 * 1024,
} as const;

/**
 * The call marker. A runtime prints it on stdout and on stderr, on a line of its own, before the
 * first output of a call on that stream (and `callMarker("")` when output stops belonging to a
 * call). The capturer removes marker lines and tags the lines after it on the same stream with
 * the request id; it never shows them. The framing is an ANSI APC sequence, which terminals do
 * not print, so `kubectl logs` of a pod stays readable.
 *
 * A function can print a marker itself: that only mislabels its own lines in its own stream,
 * since namespace, function and instance are set by the platform, never read from the line.
 */
export const CALL_MARKER_PREFIX = "\u001b_fizz:call=";
export const CALL_MARKER_SUFFIX = "\u001b\\";

export function callMarker(requestId: string): string {
  return `${CALL_MARKER_PREFIX}${requestId}${CALL_MARKER_SUFFIX}`;
}

/** The request id of a marker line (`""` clears), or undefined when the line is not a marker. */
export function parseCallMarker(line: string): string | undefined {
  if (!line.startsWith(CALL_MARKER_PREFIX) || !line.endsWith(CALL_MARKER_SUFFIX)) return undefined;
  const id = line.slice(CALL_MARKER_PREFIX.length, line.length - CALL_MARKER_SUFFIX.length);
  // Request ids are tokens; anything else is not a marker (and is shown as written).
  return /^[A-Za-z0-9._:-]{0,128}$/.test(id) ? id : undefined;
}

/** Latency buckets (ms, upper bounds) of the gateways' per-function history (`gateway.stats`). */
export const STATS_LATENCY_BOUNDS_MS = [
  1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10_000, 30_000, 60_000,
] as const;
/** Width of one history bucket, and how many a gateway keeps (one hour). */
export const STATS_BUCKET_SECONDS = 10;
export const STATS_BUCKETS = 360;
