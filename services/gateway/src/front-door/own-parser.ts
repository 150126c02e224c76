import { createRequire } from "node:module";
import type net from "node:net";
import { HTTPParser, type Parser, type StreamHandle } from "./upstream-parser";

/**
 * Header fields a head may carry. node's server keeps the first 1000 in req.headers (its
 * maxHeadersCount, 2000 names and values) and about 1023 in rawHeaders, the rest unseen while
 * llhttp acted on them (a Transfer-Encoding or Host past them): own refuses such a head (431).
 */
export const MAX_HEADER_FIELDS = 1000;

/** Node's method names, indexed as the parser reports them. */
const METHODS = (createRequire(import.meta.url)("_http_common") as { methods: string[] }).methods;
const REQUEST = (HTTPParser as unknown as { REQUEST?: number } | undefined)?.REQUEST;
/** True when the own front end can run on this Node (else the gateway stays on node's). */
export const ownFrontendAvailable = HTTPParser !== undefined && typeof REQUEST === "number";

/** A request head as llhttp read it. */
export interface RequestHead {
  method: string;
  url: string;
  /** Flat `[name, value, ...]` as sent. */
  raw: string[];
  major: number;
  minor: number;
  /** An Upgrade the client asks for, or CONNECT. */
  upgrade: boolean;
  /** HTTP/1.1 without `close`, HTTP/1.0 with `keep-alive`. */
  keepAlive: boolean;
}

/** What the parser reports to the connection (own-connection.ts). */
export interface RequestEvents {
  onMessageBegin(): void;
  onHead(head: RequestHead): void;
  onBody(chunk: Buffer): void;
  onMessageComplete(): void;
  onParseError(err: Error): void;
  /** The parser has gone through everything one read of the socket brought. */
  onReadEnd(): void;
}

/** The parser of one client connection, and whether its socket is read. */
export interface RequestParser {
  parser: Parser;
  /** Reads the socket on or stops (the handle's own read in C++, or the 'data' path's pause). */
  read(on: boolean): void;
}

function readGate(socket: net.Socket, handle: StreamHandle | undefined): (on: boolean) => void {
  let reading = true;
  return (on) => {
    if (on === reading) return;
    reading = on;
    if (handle !== undefined) {
      if (on) handle.readStart();
      else handle.readStop();
    } else if (on) socket.resume();
    else socket.pause();
  };
}

/**
 * Node's llhttp binding as node's http server drives it: requests, strict (no lenient flags), the
 * default 16 KiB head limit, the socket read in C++ (`consume`: no 'data' event, stream push or
 * Buffer per read) where the handle allows it. Heads longer than 32 header pairs come in parts
 * (kOnHeaders, with the URL's parts), joined here.
 */
export function requestParser(socket: net.Socket, ev: RequestEvents): RequestParser {
  const P = HTTPParser!;
  const p = new P();
  p.initialize(REQUEST as number, {}, 0, P.kLenientNone);
  let partialHeaders: string[] | undefined;
  let partialUrl = "";
  let tooMany = false;
  p[P.kOnMessageBegin] = () => ev.onMessageBegin();
  p[P.kOnHeaders] = (headers: string[], url: string) => {
    (partialHeaders ??= []).push(...headers);
    partialUrl += url;
  };
  p[P.kOnHeadersComplete] = (
    major: number,
    minor: number,
    headers: string[] | undefined,
    method: number,
    url: string | undefined,
    _status: unknown,
    _text: unknown,
    upgrade: boolean,
    keepAlive: boolean,
  ) => {
    let raw = headers ?? [];
    if (partialHeaders !== undefined) {
      raw = headers ? partialHeaders.concat(headers) : partialHeaders;
      partialHeaders = undefined;
    }
    const path = url ?? partialUrl;
    partialUrl = "";
    if (raw.length > 2 * MAX_HEADER_FIELDS) {
      // A callback's -1 is llhttp's error (HPE_CB_HEADERS_COMPLETE): nothing after is parsed.
      tooMany = true;
      return -1;
    }
    ev.onHead({
      method: METHODS[method] ?? "GET",
      url: path,
      raw,
      major,
      minor,
      upgrade,
      keepAlive,
    });
    return 0;
  };
  p[P.kOnBody] = (b: Buffer) => ev.onBody(b);
  p[P.kOnMessageComplete] = () => {
    // Trailers (flushed here with the URL again): not passed on, nor taken into the next head.
    partialHeaders = undefined;
    partialUrl = "";
    ev.onMessageComplete();
  };
  const failed = (r: Error): void =>
    ev.onParseError(
      tooMany
        ? Object.assign(new Error("too many header fields"), { code: "HPE_HEADER_OVERFLOW" })
        : r,
    );
  p[P.kOnExecute] = (r: number | Error) => {
    if (r instanceof Error) failed(r);
    else ev.onReadEnd();
  };
  const handle = (socket as unknown as { _handle?: StreamHandle | null })._handle;
  if (handle?.isStreamBase === true && typeof p.consume === "function") {
    p.consume(handle);
    return { parser: p, read: readGate(socket, handle) };
  }
  socket.on("data", (d: Buffer) => {
    const r = p.execute(d);
    if (r instanceof Error) failed(r);
    else ev.onReadEnd();
  });
  return { parser: p, read: readGate(socket, undefined) };
}

/** Frees a parser; not from within its own callbacks (as node's client, setImmediate). */
export function closeParser(p: Parser): void {
  p.unconsume?.();
  p.close();
}

/**
 * What the connection itself reads of a head: Expect (lower-cased), whether Host is there, and
 * whether a body follows (llhttp checked the framing headers before the head got here).
 */
export interface HeadFacts {
  expect: string | undefined;
  host: boolean;
  body: boolean;
  /** The body's Content-Length; -1 without one, or when chunked (which then frames it). */
  length: number;
}

const FACTS: HeadFacts = { expect: undefined, host: false, body: false, length: -1 };

/** One object for every head: filled and read synchronously by the caller, never kept. */
export function headFacts(raw: readonly string[]): HeadFacts {
  const f = FACTS;
  f.expect = undefined;
  f.host = false;
  f.body = false;
  f.length = -1;
  let chunked = false;
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = raw[i] as string;
    switch (name.length) {
      case 4:
        if (name.toLowerCase() === "host") f.host = true;
        break;
      case 6:
        if (name.toLowerCase() === "expect") {
          // Repeated: joined, as node's req.headers.
          const v = (raw[i + 1] as string).toLowerCase();
          f.expect = f.expect === undefined ? v : `${f.expect}, ${v}`;
        }
        break;
      case 14:
        if (name.toLowerCase() === "content-length") {
          // Digits only, and repeats equal: llhttp refused any other before the head got here.
          f.length = Number(raw[i + 1]);
          if (f.length > 0) f.body = true;
        }
        break;
      case 17:
        if (name.toLowerCase() === "transfer-encoding") f.body = chunked = true;
        break;
    }
  }
  if (chunked) f.length = -1;
  return f;
}
