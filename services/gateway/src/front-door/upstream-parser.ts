import { createRequire } from "node:module";

/**
 * Node's llhttp binding as the upstream client uses it, and the error shape it reports (undici's
 * codes, so proxy.ts treats both clients alike).
 */
export interface Parser {
  initialize(type: number, resource: object, maxHeaderSize: number, lenient: number): void;
  execute(data: Buffer): number | Error;
  finish(): number | Error | undefined;
  close(): void;
  /** Reads a stream handle in C++ (as Node's http server does); absent on other Node versions. */
  consume?(handle: object): void;
  unconsume?(): void;
  [k: number]: unknown;
}
/** The libuv stream behind a net.Socket (`isStreamBase`: what `consume` accepts). */
export interface StreamHandle {
  isStreamBase?: boolean;
  readStart(): number;
  readStop(): number;
}
export interface ParserClass {
  new (): Parser;
  RESPONSE: number;
  kOnMessageBegin: number;
  kOnHeaders: number;
  kOnHeadersComplete: number;
  kOnBody: number;
  kOnMessageComplete: number;
  kOnExecute: number;
  kLenientNone: number;
}
/**
 * Node's llhttp binding, as its http client uses it (no public export; `_http_common` is
 * deprecated in documentation only). A Node without it, or with another shape, leaves every
 * request on undici (`upstreamClientAvailable`) instead of failing at start.
 */
export const HTTPParser = ((): ParserClass | undefined => {
  try {
    const P = (createRequire(import.meta.url)("_http_common") as { HTTPParser?: ParserClass })
      .HTTPParser;
    const keys = [
      P?.RESPONSE,
      P?.kOnMessageBegin,
      P?.kOnHeaders,
      P?.kOnHeadersComplete,
      P?.kOnBody,
      P?.kOnMessageComplete,
      P?.kOnExecute,
      P?.kLenientNone,
    ];
    return typeof P === "function" && keys.every((k) => typeof k === "number") ? P : undefined;
  } catch {
    return undefined;
  }
})();

/** False on a Node whose parser binding this client cannot use: proxy.ts then uses undici. */
export const upstreamClientAvailable = HTTPParser !== undefined;

export function coded(message: string, code: string): Error {
  return Object.assign(new Error(message), { code });
}
