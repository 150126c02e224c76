/**
 * Generated client requests for the differential fuzz of the own front end (own-frontend-fuzz.ts):
 * methods, versions, targets, odd header names and values, Connection, Expect, Upgrade, and every
 * body framing (Content-Length in odd forms, chunked with odd sizes, extensions and trailers,
 * both, repeated).
 */

export interface Gen {
  r: () => number;
  pick<T>(xs: readonly T[]): T;
  chance(p: number): boolean;
  int(lo: number, hi: number): number;
}

/** What the generator meant a request to ask (the fuzz reads what llhttp made of it instead). */
interface Intent {
  upgrade: boolean;
  connect: boolean;
  expect: string | undefined;
  http11: boolean;
  last: boolean;
}

const METHODS = [
  "GET",
  "GET",
  "GET",
  "POST",
  "POST",
  "PUT",
  "HEAD",
  "DELETE",
  "OPTIONS",
  "PATCH",
  "get",
  "CONNECT",
  "TRACE",
  "FOO",
  "G ET",
  "PRI",
  "M-SEARCH",
  "PROPFIND",
] as const;
const VERSIONS = [
  "HTTP/1.1",
  "HTTP/1.1",
  "HTTP/1.1",
  "HTTP/1.1",
  "HTTP/1.0",
  "HTTP/1.0",
  "HTTP/1.2",
  "HTTP/2.0",
  "HTTP/0.9",
  "http/1.1",
  "HTTP/1.1 ",
  "HTTP/1.10",
  "HTTP/11",
] as const;
const ODD_VALUES = [
  "a\tb",
  " lead",
  "trail ",
  "\x7f",
  "\x80\xff",
  "a\x00b",
  "a\rb",
  "a\nb",
  "x\r\n fold",
  "",
  "é",
  "a,b",
  '"q"',
  "\x01",
] as const;
const ODD_NAMES = [
  "X A",
  "X@A",
  "X_A",
  " X-A",
  "X-A ",
  "X\x7fA",
  "X\x80",
  "x-a",
  "X-A\t",
  "",
  "X:A",
  "\x00",
] as const;
const CONNECTION = [
  "close",
  "keep-alive",
  "Close",
  "upgrade",
  "close, x-a",
  "keep-alive, close",
  "te",
  "",
] as const;
const EXPECT = ["100-continue", "100-Continue", "foo", "100-continue, foo", ""] as const;
const TE = [
  "chunked",
  "chunked",
  "Chunked",
  "chunked, chunked",
  "gzip",
  "gzip, chunked",
  "chunked, gzip",
  " chunked",
  "chunked ",
  "identity",
  "chunked\x00",
  "xchunked",
] as const;
const CL_FORMS = ["+N", " N", "N ", "N, N", "0N", "-1", "N.0", "0xN", "99999999999999999999"];

function target(g: Gen, slot: number, i: number): string {
  const p = `/function/c${slot}/p${i}`;
  switch (g.int(0, 14)) {
    case 0:
      return `${p}?q=${g.pick(["1", "a%20b", "é", "a b", "x\x7f"])}`;
    case 1:
      return `http://x${p}`;
    case 2:
      return "*";
    case 3:
      return `/function/c${slot}/%2e%2e/p${i}`;
    case 4:
      return `${p}#frag`;
    case 5:
      return `${p}${g.pick(["\x80", "\x7f", "\t", "%00", "\\"])}`;
    case 6:
      return `//function/c${slot}/p${i}`;
    case 7:
      return `x:80`;
    case 8:
      return `/function/c${slot}/p${i}/../q`;
    default:
      return p;
  }
}

export function chunkedBody(g: Gen, body: string): string {
  let out = "";
  let left = body;
  while (left.length > 0) {
    const n = g.int(1, left.length);
    let size = n.toString(16);
    if (g.chance(0.08))
      size = g.pick([
        `0${size}`,
        `${size} `,
        `${size}\t`,
        `0x${size}`,
        "g",
        "-1",
        "ffffffffffffffffff",
        size.toUpperCase(),
        "",
      ]);
    let ext = "";
    if (g.chance(0.1))
      ext = g.pick([";a=b", ";a", ';a="q"', "; a=b", ";a=b;c", ';a="\\"', ";a=\x7f", ";a\r"]);
    out += `${size}${ext}\r\n${left.slice(0, n)}\r\n`;
    left = left.slice(n);
    if (g.chance(0.03)) out = out.slice(0, -2) + g.pick(["\n", "\r", "xx\r\n"]);
  }
  let last = g.chance(0.05) ? g.pick(["00", "0 ", "0;x=y"]) : "0";
  last += "\r\n";
  if (g.chance(0.2)) {
    const trailers = g.pick([
      "X-T: 1\r\n",
      "X-T: 1\r\nX-U: 2\r\n",
      "Content-Length: 5\r\n",
      "Host: y\r\n",
      "X T: 1\r\n",
      "X-T: a\rb\r\n",
      "GET /function/c0/smuggled HTTP/1.1\r\n",
      ": x\r\n",
    ]);
    last += trailers;
  }
  return out + last + (g.chance(0.03) ? "\n" : "\r\n");
}

export function request(g: Gen, slot: number, i: number): { bytes: string; f: Intent } {
  const method = g.chance(0.7) ? g.pick(["GET", "POST", "PUT"]) : g.pick(METHODS);
  const version = g.chance(0.75) ? "HTTP/1.1" : g.pick(VERSIONS);
  const lines: string[] = [];
  const f: Intent = {
    upgrade: false,
    connect: method === "CONNECT",
    expect: undefined,
    last: false,
    http11: version === "HTTP/1.1",
  };
  // Host
  const host = g.int(0, 11);
  if (host < 8) lines.push("Host: x");
  else if (host === 8) lines.push("Host: x", "Host: y");
  else if (host === 9)
    lines.push(`Host: ${g.pick(["", "x y", "x:99999", "\x7f", "[::1]", "x@y"])}`);
  else if (host === 10) lines.push("host:x");
  // Odd headers
  for (let k = g.int(0, 2); k > 0; k--) {
    if (g.chance(0.5)) lines.push(`X-A: ${g.pick(ODD_VALUES)}`);
    else lines.push(`${g.pick(ODD_NAMES)}: v`);
  }
  if (g.chance(0.15)) lines.push(`Connection: ${g.pick(CONNECTION)}`);
  if (g.chance(0.08)) {
    const e = g.pick(EXPECT);
    lines.push(`Expect: ${e}`);
    f.expect = e.toLowerCase();
  }
  if (g.chance(0.05)) lines.push("Upgrade: websocket");
  // Body framing
  const body = g.chance(0.5) ? "b".repeat(g.int(0, 12)) + String(i) : "";
  let bodyBytes = "";
  const framing = g.int(0, 9);
  if (framing <= 3) {
    if (body.length > 0 || g.chance(0.3)) lines.push(`Content-Length: ${body.length}`);
    bodyBytes = body;
  } else if (framing <= 5) {
    lines.push("Transfer-Encoding: chunked");
    bodyBytes = chunkedBody(g, body);
  } else if (framing === 6) {
    const n = String(body.length);
    lines.push(`Content-Length: ${g.pick(CL_FORMS).replace(/N/g, n)}`);
    bodyBytes = body;
  } else if (framing === 7) {
    lines.push(
      `Content-Length: ${body.length}`,
      `Content-Length: ${g.pick([body.length, body.length + 1, 0])}`,
    );
    bodyBytes = body;
  } else if (framing === 8) {
    lines.push(`Transfer-Encoding: ${g.pick(TE)}`);
    if (g.chance(0.5)) lines.push(`Content-Length: ${body.length}`);
    bodyBytes = g.chance(0.7) ? chunkedBody(g, body) : body;
  } else {
    lines.push("Transfer-Encoding: chunked", `Transfer-Encoding: ${g.pick(TE)}`);
    bodyBytes = chunkedBody(g, body);
  }
  // Shuffle some header order.
  if (g.chance(0.3)) lines.sort(() => g.r() - 0.5);
  const eol = (): string => (g.chance(0.02) ? g.pick(["\n", "\r", "\r\r\n"]) : "\r\n");
  let head = `${method} ${target(g, slot, i)} ${version}${eol()}`;
  for (const l of lines) head += `${l}${eol()}`;
  head += g.chance(0.02) ? "\n" : "\r\n";
  const conn = lines.find((l) => /^connection:/i.test(l)) ?? "";
  // An upgrade to llhttp (and both servers): Upgrade with Connection: upgrade.
  f.upgrade = lines.some((l) => /^upgrade:/i.test(l)) && /upgrade/i.test(conn);
  f.last = version !== "HTTP/1.1" ? !/keep-alive/i.test(conn) : /close/i.test(conn);
  const lead = g.chance(0.03) ? g.pick(["\r\n", "\n", " "]) : "";
  return { bytes: lead + head + bodyBytes, f };
}
