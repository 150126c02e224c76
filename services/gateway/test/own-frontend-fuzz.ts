import { HTTPParser } from "../src/front-door/upstream-parser";
import { chunkedBody, request, type Gen } from "./own-frontend-fuzz-requests";

/**
 * Byte streams for the differential fuzz of the own front end (own-frontend-differential.int):
 * generated requests (own-frontend-fuzz-requests.ts), and mutations of them, header and chunk
 * edge cases, methods and targets, split at random points or inside every token.
 */

export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function gen(seed: number): Gen {
  const r = rng(seed);
  return {
    r,
    pick: (xs) => xs[Math.floor(r() * xs.length)] as (typeof xs)[number],
    chance: (p) => r() < p,
    int: (lo, hi) => lo + Math.floor(r() * (hi - lo + 1)),
  };
}

/** What a request asks for, as llhttp (both front ends' parser) reads it: for the allow-list. */
export interface Features {
  upgrade: boolean;
  connect: boolean;
  expect: string | undefined;
  http11: boolean;
  /** No request is to be taken after it (HTTP/1.0 without keep-alive, 2.0, Connection: close). */
  last: boolean;
  /** Header fields in its head. */
  fields: number;
}

export interface Case {
  index: number;
  kind: string;
  bytes: Buffer;
  /** Where the bytes are split into writes. */
  cuts: number[];
  features: Features[];
}

/**
 * The requests in a byte stream as a strict llhttp reads it whole (as both servers' parsers):
 * the features of each up to the first error or upgrade (nothing after those is taken).
 */
export function featuresOf(bytes: Buffer): Features[] {
  const P = HTTPParser!;
  const p = new P();
  p.initialize((P as unknown as { REQUEST: number }).REQUEST, {}, 0, P.kLenientNone);
  const out: Features[] = [];
  let partial: string[] = [];
  let stop = false;
  p[P.kOnHeaders] = (h: string[]) => partial.push(...h);
  p[P.kOnHeadersComplete] = (
    major: number,
    minor: number,
    headers: string[] | undefined,
    method: number,
    _url: unknown,
    _s: unknown,
    _t: unknown,
    upgrade: boolean,
    keepAlive: boolean,
  ) => {
    const raw = headers ? partial.concat(headers) : partial;
    partial = [];
    let expect: string | undefined;
    for (let i = 0; i + 1 < raw.length; i += 2)
      if ((raw[i] as string).toLowerCase() === "expect") {
        const v = (raw[i + 1] as string).toLowerCase();
        expect = expect === undefined ? v : `${expect}, ${v}`;
      }
    if (!stop)
      out.push({
        upgrade,
        connect: method === 5, // llhttp's HTTP_CONNECT
        expect,
        http11: major === 1 && minor === 1,
        last: !keepAlive,
        fields: raw.length / 2,
      });
    if (upgrade) stop = true;
    return 0;
  };
  p[P.kOnMessageComplete] = () => {
    partial = [];
  };
  p.execute(bytes);
  p.close();
  return out;
}

const INTERESTING = ["\r", "\n", "\0", " ", "\t", "\x7f", ":", ",", ";", '"', "0", "a", "\\", "/"];
const byte = (g: Gen): string =>
  g.chance(0.3) ? String.fromCharCode(g.int(0x80, 0xff)) : g.pick(INTERESTING);

/**
 * 1 to 4 mutations of a stream: a byte replaced, inserted or dropped, a line repeated or dropped,
 * a CRLF cut to LF or CR, a name's case flipped, space before a colon, the stream cut short. The
 * function's path (`/function/cN/pI`) is kept: a case must reach its own slot only.
 */
function mutate(g: Gen, s: string, slot: number): string {
  for (let k = g.int(1, 4); k > 0; k--) {
    const keep: [number, number][] = [];
    const re = new RegExp(`/function/c${slot}/(?:%2e%2e/)?p\\d+`, "g");
    for (const m of s.matchAll(re)) keep.push([m.index, m.index + m[0].length]);
    let at = g.int(0, s.length);
    for (let tries = 0; keep.some(([a, b]) => at > a && at < b) && tries < 8; tries++)
      at = g.int(0, s.length);
    if (keep.some(([a, b]) => at > a && at < b)) continue;
    const lineStart = s.lastIndexOf("\n", at - 1) + 1;
    let lineEnd = s.indexOf("\n", at);
    lineEnd = lineEnd < 0 ? s.length : lineEnd + 1;
    const line = s.slice(lineStart, lineEnd);
    const touchesPath = keep.some(([a, b]) => a < lineEnd && b > lineStart);
    switch (g.int(0, 9)) {
      case 0:
      case 1:
        s = s.slice(0, at) + byte(g) + s.slice(at + 1);
        break;
      case 2:
      case 3:
        s = s.slice(0, at) + byte(g) + s.slice(at);
        break;
      case 4:
        s = s.slice(0, at) + s.slice(at + 1);
        break;
      case 5:
        if (!touchesPath) s = s.slice(0, lineEnd) + line + s.slice(lineEnd);
        break;
      case 6:
        if (!touchesPath) s = s.slice(0, lineStart) + s.slice(lineEnd);
        break;
      case 7: {
        const crlf = s.indexOf("\r\n", at);
        if (crlf >= 0)
          s = s.slice(0, crlf) + g.pick(["\n", "\r", "\r\r\n", "\n\r"]) + s.slice(crlf + 2);
        break;
      }
      case 8: {
        const colon = s.indexOf(":", at);
        if (colon < 0) break;
        const sp = g.pick([" ", "\t", "", "  "]);
        const i = g.int(lineStart, colon);
        const c = s[i] ?? "";
        const flipped = c === c.toUpperCase() ? c.toLowerCase() : c.toUpperCase();
        s = g.chance(0.5)
          ? s.slice(0, colon) + sp + s.slice(colon)
          : s.slice(0, i) + flipped + s.slice(i + 1);
        break;
      }
      default:
        if (g.chance(0.3)) s = s.slice(0, Math.max(at, 1));
        else s = s.slice(0, at) + g.pick(["\r\n", "\r\n\r\n", "0\r\n\r\n", "\r\n "]) + s.slice(at);
    }
  }
  return s;
}

/** Headers near the parser's limits: 32 per flush, node's ~1000 kept, 16 KiB in all. */
function manyHeaders(g: Gen, slot: number, i: number): string {
  const lines: string[] = [`${g.pick(["GET", "POST"])} /function/c${slot}/p${i} HTTP/1.1`];
  const hostAt = g.pick(["first", "last", "none", "mid"]);
  if (hostAt === "first") lines.push("Host: x");
  const n = g.pick([31, 32, 33, 63, 64, 65, 100, 999, 1000, 1001, 1023, 1024, 1025, 1100, 1500]);
  const big = n < 200 && g.chance(0.4);
  const valueLen = big ? Math.floor(g.int(15_000, 16_400) / n) : 0;
  const special = g.chance(0.3) ? g.int(0, n - 1) : -1;
  for (let k = 0; k < n; k++) {
    if (hostAt === "mid" && k === n >> 1) lines.push("Host: x");
    if (k === special)
      lines.push(g.pick(["Host: y", "Content-Length: 0", "Expect: 100-continue", "X-Fizz-A: 1"]));
    const value = big ? "v".repeat(valueLen) : g.pick(["", "1", "v", " v ", "\tv"]);
    lines.push(`x${k % 7}:${value}`);
  }
  if (hostAt === "last") lines.push("Host: x");
  let body = "";
  if (g.chance(0.4)) {
    const framing = g.pick([
      "Content-Length: 3",
      "Transfer-Encoding: chunked",
      "Connection: close",
    ]);
    lines.splice(g.int(1, lines.length), 0, framing);
    body = framing.startsWith("Content")
      ? "bbb"
      : framing.startsWith("Transfer")
        ? "3\r\nbbb\r\n0\r\n\r\n"
        : "";
  }
  return `${lines.join("\r\n")}\r\n\r\n${body}`;
}

/** A long name or value around the 16 KiB head limit. */
function longHeader(g: Gen, slot: number, i: number): string {
  const head = `GET /function/c${slot}/p${i} HTTP/1.1\r\nHost: x\r\n`;
  const room = 16 * 1024 - head.length - 4;
  const len = room + g.int(-40, 40);
  const line = g.chance(0.5) ? `X-Long: ${"v".repeat(len - 8)}` : `${"n".repeat(len - 3)}: v`;
  return `${head}${line}\r\n\r\n`;
}

const SIZES = [
  "0000000000000000000000003",
  "00003",
  "3",
  "10000000000000003",
  "fffffffffffffff",
  "ffffffffffffffff",
  "7fffffffffffffff",
  "3;" + "e".repeat(100),
  "3;a=b;c=d",
  "3 ;a",
  "3\t",
  "+3",
  "-3",
  "3x",
  "03",
];

/** Chunked bodies of pipelined requests with odd chunk sizes and extensions. */
function chunkEdge(g: Gen, slot: number, i: number): string {
  const head = `POST /function/c${slot}/p${i} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n`;
  const size = g.pick(SIZES);
  let body = `${size}\r\nbbb\r\n`;
  if (g.chance(0.5)) body += chunkedBody(g, `b${i}`).replace(/^/, "");
  else body += g.pick(["0\r\n\r\n", "0;x\r\n\r\n", "000\r\n\r\n", "0\r\nX-T: 1\r\n\r\n"]);
  return head + body;
}

const FORMS: readonly ((slot: number, i: number) => string)[] = [
  (s, i) => `HEAD /function/c${s}/p${i} HTTP/1.1\r\nHost: x\r\n\r\n`,
  (s, i) => `HEAD /function/c${s}/p${i} HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nbbb`,
  (s, i) => `OPTIONS /function/c${s}/p${i} HTTP/1.1\r\nHost: x\r\n\r\n`,
  () => `OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n`,
  () => `GET * HTTP/1.1\r\nHost: x\r\n\r\n`,
  () => `CONNECT x:80 HTTP/1.1\r\nHost: x:80\r\n\r\n`,
  (s, i) => `CONNECT /function/c${s}/p${i} HTTP/1.1\r\nHost: x\r\n\r\n`,
  (s, i) => `GET http://x/function/c${s}/p${i} HTTP/1.1\r\nHost: y\r\n\r\n`,
  (s, i) => `GET https://x:1/function/c${s}/p${i}?a HTTP/1.1\r\nHost: x\r\n\r\n`,
  (s, i) =>
    `POST /function/c${s}/p${i} HTTP/1.0\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nb${i % 10}`,
  (s, i) => `GET /function/c${s}/p${i} HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n`,
  (s, i) =>
    `GET /function/c${s}/p${i} HTTP/1.0\r\nHost: x\r\nConnection: keep-alive, close\r\n\r\n`,
  (s, i) =>
    `GET /function/c${s}/p${i} HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nExpect: 100-continue\r\n\r\n`,
  (s, i) =>
    `PUT /function/c${s}/p${i} HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nbb`,
  (s, i) => `GET /function/c${s}/p${i} HTTP/1.1\r\nHost: x\r\nHost: x\r\nhost:  y \r\n\r\n`,
  (s, i) =>
    `GET /function/c${s}/p${i} HTTP/1.1\r\nhOsT: x\r\ncontent-length: 0\r\nCONTENT-LENGTH:  0 \r\n\r\n`,
  (s, i) =>
    `POST /function/c${s}/p${i} HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\ntransfer-encoding: CHUNKED\r\n\r\n2\r\nbb\r\n0\r\n\r\n`,
  (s, i) =>
    `POST /function/c${s}/p${i} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding:\tchunked\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nbb\r\n0\r\n\r\n`,
  (s, i) => `GET /function/c${s}/p${i} HTTP/1.1\r\nHost: x\r\nX-A: a\r\n  folded\r\n\r\n`,
  (s, i) => `GET /function/c${s}/p${i} HTTP/1.1\r\nHost: x\r\nX-A:\r\nX-B: \r\nX-C:\t\r\n\r\n`,
  (s, i) =>
    `GET /function/c${s}/p${i} HTTP/1.1\r\nHost: x\r\nUpgrade: h2c\r\nConnection: Upgrade, HTTP2-Settings\r\nHTTP2-Settings: AA\r\n\r\n`,
  (s, i) => `DELETE /function/c${s}/p${i} HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\nb`,
];

function oddForm(g: Gen, slot: number, i: number): string {
  return g.pick(FORMS)(slot, i);
}

const KINDS = [
  "classic",
  "classic",
  "classic",
  "mutated",
  "mutated",
  "headers",
  "chunks",
  "forms",
] as const;

/** `only`: every case of that kind (a campaign on one kind). */
export function makeCase(seed: number, index: number, slot: number, only?: string): Case {
  const g = gen((seed ^ Math.imul(index + 1, 0x9e3779b1)) >>> 0);
  const picked = g.pick(KINDS);
  const kind = KINDS.find((k) => k === only) ?? picked;
  const n = g.pick([1, 1, 2, 2, 3, 4]);
  let s = "";
  for (let i = 0; i < n; i++) {
    switch (kind) {
      case "headers":
        s +=
          i === 0
            ? g.chance(0.7)
              ? manyHeaders(g, slot, i)
              : longHeader(g, slot, i)
            : request(g, slot, i).bytes;
        break;
      case "chunks":
        s += g.chance(0.6) ? chunkEdge(g, slot, i) : request(g, slot, i).bytes;
        break;
      case "forms":
        s += g.chance(0.7) ? oddForm(g, slot, i) : request(g, slot, i).bytes;
        break;
      case "classic":
      case "mutated":
        s += request(g, slot, i).bytes;
    }
  }
  if (g.chance(0.05)) s += g.pick(["\r\n", "garbage", "\x00"]);
  if (kind === "mutated") s = mutate(g, s, slot);
  const bytes = Buffer.from(s, "latin1");
  let cuts: number[] = [];
  if (bytes.length < 400 && g.chance(0.1)) {
    // Inside every token: before and after each delimiter.
    for (let k = 0; k < bytes.length; k++)
      if (" :\r\n;,\t".includes(String.fromCharCode(bytes[k] as number))) cuts.push(k, k + 1);
  } else for (let k = g.int(0, 4); k > 0; k--) cuts.push(g.int(1, Math.max(1, bytes.length - 1)));
  cuts = [...new Set(cuts)].filter((x) => x > 0 && x < bytes.length).sort((a, b) => a - b);
  return { index, kind, bytes, cuts, features: featuresOf(bytes) };
}
