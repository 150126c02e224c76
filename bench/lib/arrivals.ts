import diagnosticsChannel from "node:diagnostics_channel";

/**
 * Whether a burst was concurrent: every request's headers written to its socket before the first
 * answer's headers came back. Without it, an instance count against ceil(requests / concurrency)
 * means nothing: a request that arrives after an earlier one was answered rightly reuses the slot
 * that answer freed, and a burst of short calls opened over hundreds of milliseconds (connections
 * on a busy machine) is a stream, not a burst.
 *
 * Read from undici's diagnostics channels (undici 7: `undici:client:sendHeaders`, published as the
 * request head is written to the connected socket; `undici:request:headers`, as a response head is
 * parsed). They are process-wide, and Node's own fetch publishes on them too, so requests are told
 * apart by origin and path prefix. "Sent" is the client's write, not the gateway's read: on one
 * machine the two are apart by one loop turn of the gateway, which is why the hold of the bench's
 * handlers is seconds, far above that, and why the margin is reported.
 */

export interface ArrivalFigures {
  /** Every expected request was sent, and the last before the first answer arrived. */
  concurrent: boolean;
  /** Requests whose headers were sent. */
  sent: number;
  /** Requests sent after the first answer arrived (each could reuse a freed slot). */
  sent_after_first_answer: number;
  /** From the first request sent to the last. */
  send_spread_ms: number;
  /** From the last request sent to the first answer (negative: answers came first). */
  margin_ms: number;
}

interface UndiciRequestLike {
  origin?: unknown;
  path?: unknown;
}

export class ArrivalProbe {
  private readonly sends: number[] = [];
  private firstAnswer = Infinity;
  private readonly onSend = (m: unknown) => {
    if (this.matches(m)) this.sends.push(performance.now());
  };
  private readonly onHeaders = (m: unknown) => {
    if (this.matches(m)) this.firstAnswer = Math.min(this.firstAnswer, performance.now());
  };
  private stopped = false;

  /** Starts listening; `origin` as `http://host:port`, `pathPrefix` e.g. `/function/burst`. */
  constructor(
    private readonly origin: string,
    private readonly pathPrefix: string,
  ) {
    this.origin = new URL(origin).origin;
    diagnosticsChannel.subscribe("undici:client:sendHeaders", this.onSend);
    diagnosticsChannel.subscribe("undici:request:headers", this.onHeaders);
  }

  /** Stops listening and judges the burst of `expected` requests. */
  finish(expected: number): ArrivalFigures {
    this.stop();
    const sends = this.sends;
    const first = sends.length > 0 ? Math.min(...sends) : 0;
    const last = sends.length > 0 ? Math.max(...sends) : 0;
    const late = sends.filter((t) => t >= this.firstAnswer).length;
    const margin = Number.isFinite(this.firstAnswer) ? this.firstAnswer - last : 0;
    return {
      concurrent: sends.length === expected && late === 0 && Number.isFinite(this.firstAnswer),
      sent: sends.length,
      sent_after_first_answer: late,
      send_spread_ms: Math.round(last - first),
      margin_ms: Math.round(margin),
    };
  }

  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    diagnosticsChannel.unsubscribe("undici:client:sendHeaders", this.onSend);
    diagnosticsChannel.unsubscribe("undici:request:headers", this.onHeaders);
  }

  private matches(m: unknown): boolean {
    const req = (m as { request?: UndiciRequestLike } | undefined)?.request;
    if (!req || typeof req.path !== "string" || !req.path.startsWith(this.pathPrefix)) return false;
    // A string origin as given to the dispatcher, or a URL (whose text ends in "/").
    return String(req.origin).startsWith(this.origin);
  }
}

/** The table row of a burst's arrivals. */
export function arrivalsRow(
  label: string,
  holdMs: number,
  a: ArrivalFigures,
): [string, string, string] {
  return [
    `${label} concurrent / sent after 1st answer / send spread / margin ms`,
    `${a.concurrent} / ${a.sent_after_first_answer} / ${a.send_spread_ms} / ${a.margin_ms}`,
    `concurrent = true (each call held ${holdMs} ms)`,
  ];
}
