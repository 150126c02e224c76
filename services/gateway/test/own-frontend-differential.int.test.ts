import type http from "node:http";
import { writeFileSync } from "node:fs";
import net from "node:net";
import { expect } from "chai";
import {
  closeClients,
  functionObject,
  leaseOf,
  startHarness,
  startInstance,
  type Harness,
  type Instance,
} from "./harness";

/**
 * Differential fuzz of the own front end (FIZZ_GATEWAY_FRONTEND=own) against node's http.Server:
 * the same raw client byte stream, split at the same write boundaries, goes to a gateway on each;
 * what reached the function (method, path, headers, body) and the client's status sequence must
 * match, but for the differences listed in ALLOWED (each with its reason). The own front end must
 * never deliver a request node's would not.
 *
 * Seeded: FIZZ_FUZZ_SEED (default below, printed) and FIZZ_FUZZ_CASES (default 500) reproduce a
 * run; a failing case prints its seed, index and bytes.
 */
const SEED = Number(process.env.FIZZ_FUZZ_SEED ?? 20261206);
const CASES = Number(process.env.FIZZ_FUZZ_CASES ?? 500);
/** Cases run at once, each on its own function (and instance) per front end. */
const SLOTS = 6;
/** A case is over when its connection closed or nothing came for this long after the last write. */
const QUIET_MS = 150;

function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

interface Gen {
  r: () => number;
  pick<T>(xs: readonly T[]): T;
  chance(p: number): boolean;
  int(lo: number, hi: number): number;
}

function gen(seed: number): Gen {
  const r = rng(seed);
  return {
    r,
    pick: (xs) => xs[Math.floor(r() * xs.length)] as (typeof xs)[number],
    chance: (p) => r() < p,
    int: (lo, hi) => lo + Math.floor(r() * (hi - lo + 1)),
  };
}

/** What a generated request asks for: read by the allow-list. */
interface Features {
  upgrade: boolean;
  connect: boolean;
  expect: string | undefined;
  http11: boolean;
  /** No request is to be taken after it (HTTP/1.0 without keep-alive, 2.0, Connection: close). */
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

function chunkedBody(g: Gen, body: string): string {
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

function request(g: Gen, slot: number, i: number): { bytes: string; f: Features } {
  const method = g.chance(0.7) ? g.pick(["GET", "POST", "PUT"]) : g.pick(METHODS);
  const version = g.chance(0.75) ? "HTTP/1.1" : g.pick(VERSIONS);
  const lines: string[] = [];
  const f: Features = {
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

interface Case {
  index: number;
  bytes: Buffer;
  /** Where the bytes are split into writes. */
  cuts: number[];
  features: Features[];
}

function makeCase(seed: number, index: number, slot: number): Case {
  const g = gen((seed ^ Math.imul(index + 1, 0x9e3779b1)) >>> 0);
  const n = g.pick([1, 1, 2, 2, 3, 4]);
  let s = "";
  const features: Features[] = [];
  for (let i = 0; i < n; i++) {
    const r = request(g, slot, i);
    s += r.bytes;
    features.push(r.f);
  }
  if (g.chance(0.05)) s += g.pick(["\r\n", "garbage", "\x00"]);
  const bytes = Buffer.from(s, "latin1");
  const cuts: number[] = [];
  for (let k = g.int(0, 4); k > 0; k--) cuts.push(g.int(1, Math.max(1, bytes.length - 1)));
  cuts.sort((a, b) => a - b);
  return { index, bytes, cuts, features };
}

/** Headers the gateway sets itself per request or per connection (they differ run to run). */
const VOLATILE = new Set([
  "x-request-id",
  "traceparent",
  "x-forwarded-for",
  "x-forwarded-port",
  "forwarded",
  "x-fizz-instance",
  "x-fizz-deadline",
  "x-fizz-request-id",
  "x-real-ip",
  "x-fizz-trace-id",
  "connection",
  "keep-alive",
  "host",
]);

interface Delivered {
  method: string;
  url: string;
  headers: string;
  body: string;
}

/** Every request that reached a case's function, by front end and slot. */
const delivered = { own: [] as Delivered[][], node: [] as Delivered[][] };

function recorder(
  list: Delivered[],
): (req: http.IncomingMessage, res: http.ServerResponse) => void {
  return (req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const h: string[] = [];
      for (let i = 0; i + 1 < req.rawHeaders.length; i += 2) {
        const name = (req.rawHeaders[i] as string).toLowerCase();
        if (!VOLATILE.has(name)) h.push(`${name}: ${req.rawHeaders[i + 1] as string}`);
      }
      list.push({
        method: req.method ?? "",
        url: req.url ?? "",
        headers: h.join("\n"),
        body: Buffer.concat(chunks).toString("latin1"),
      });
      // Which request this answers, for the client-side check that answers are not shifted.
      res.writeHead(200, {
        "content-length": "2",
        "x-echo": encodeURIComponent(`${req.method ?? ""} ${req.url ?? ""}`),
      });
      res.end("ok");
    });
    req.on("error", () => undefined);
  };
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Sends a case's bytes at its cuts; resolves with what came back once closed or quiet. */
async function drive(port: number, c: Case): Promise<{ out: string; closed: boolean }> {
  const s = net.connect(port, "127.0.0.1");
  s.setNoDelay(true);
  let out = "";
  let closed = false;
  let last = Date.now();
  s.on("error", () => undefined);
  s.on("data", (d: Buffer) => {
    out += d.toString("latin1");
    last = Date.now();
  });
  const done = new Promise<void>((r) => s.on("close", () => ((closed = true), r())));
  await new Promise<void>((r) => s.once("connect", () => r()));
  let at = 0;
  for (const cut of [...c.cuts, c.bytes.length]) {
    if (cut <= at) continue;
    if (closed) break;
    s.write(c.bytes.subarray(at, cut));
    at = cut;
    await sleep(2);
  }
  last = Date.now();
  while (!closed && Date.now() - last < QUIET_MS) await Promise.race([done, sleep(25)]);
  s.destroy();
  return { out, closed };
}

/**
 * The status codes of the answers in a client's bytes. The function answers "ok" and the gateway
 * JSON naming no status line, so a status line is found wherever it starts (after a body too).
 */
function statuses(out: string): number[] {
  return [...out.matchAll(/HTTP\/1\.[01] (\d{3}) /g)].map((m) => Number(m[1]));
}

interface Outcome {
  got: Delivered[];
  statuses: number[];
  closed: boolean;
  out: string;
}

/**
 * Whether what own delivered is the client's own requests, in the client's order, none past
 * index `upTo`, each exactly as node delivered it when node did: own may stop earlier than node
 * (a refusal, a cut), never deliver anything else.
 */
function ownIsClients(own: Outcome, node: Outcome, upTo = Infinity): boolean {
  let prev = -1;
  for (const d of own.got) {
    const m = /^\/(?:[^?#]*\/)?p(\d+)(?!\d)/.exec(d.url);
    const i = m ? Number(m[1]) : -1;
    if (i <= prev || i > upTo) return false;
    prev = i;
    const same = node.got.filter((n) => n.url === d.url);
    if (same.length > 0 && !same.some((n) => JSON.stringify(n) === JSON.stringify(d))) return false;
  }
  return true;
}

/**
 * Known differences, each with why own's behaviour is as safe or safer. Every rule also holds
 * own to deliver only the client's requests as node does (ownIsClients).
 */
const ALLOWED: {
  name: string;
  why: string;
  applies(c: Case, own: Outcome, node: Outcome): boolean;
}[] = [
  {
    name: "Upgrade/CONNECT refused 400 by own",
    why: "node's server without an 'upgrade' listener serves an Upgrade as a plain request and cuts a CONNECT's connection (without an answer, and the requests before it); own answers both 400 and takes nothing after",
    applies: (c, own, node) => {
      const u = c.features.findIndex((f) => f.upgrade || f.connect);
      return u >= 0 && ownIsClients(own, node, u - 1);
    },
  },
  {
    name: "no request taken after a refused Expect on own",
    why: "own closes the connection after its 417 (the refused request's body may follow and would be read as a request); node keeps the connection and reads on",
    applies: (c, own, node) => {
      const e = c.features.findIndex(
        (f) => f.http11 && f.expect !== undefined && f.expect !== "100-continue",
      );
      return e >= 0 && own.statuses.includes(417) && ownIsClients(own, node, e);
    },
  },
  {
    name: "requests before a malformed one: how far they get before the 400 and the close",
    why: "a malformed request gets 400 and the close on both; whether the requests before it were proxied or answered by then depends on the write boundaries and the event loop, on both front ends (node also proxies requests whose answers its cut then loses; own drops a queued request with its connection)",
    applies: (_c, own, node) =>
      own.closed &&
      own.statuses.at(-1) === 400 &&
      (node.statuses.at(-1) === 400 || node.closed) &&
      ownIsClients(own, node),
  },
  {
    name: "bytes after a last request are not parsed by own",
    why: "after a last request (Connection: close, HTTP/1.0) own drops what follows unread; node parses it, and a parse error there answers 400 and cuts the connection, aborting the last request (and those before) before or after they reach the function",
    applies: (c, own, node) => {
      const last = c.features.findIndex((f) => f.last);
      return last >= 0 && ownIsClients(own, node, last);
    },
  },
  {
    name: "own closes after answering a 100-continue request whose body it never asked for",
    why: "node's server sends 100 Continue as soon as it reads the head, so the body follows and it reads on; own sends it only when the body is first read: a request answered before (a 404) leaves it unknown whether the body comes, so own closes rather than read a body as a request",
    applies: (c, own, node) =>
      c.features.some((f) => f.http11 && f.expect === "100-continue") &&
      own.closed &&
      own.statuses.every((x, i) => x === node.statuses[i]) &&
      ownIsClients(own, node),
  },
  {
    name: "pipelined requests reach the function one at a time on own",
    why: "node's server runs the handler of every pipelined request at once (answers queued), so they reach the function in any order; own runs them in turn, in the client's order",
    applies: (_c, own, node) =>
      JSON.stringify(own.statuses) === JSON.stringify(node.statuses) &&
      JSON.stringify(own.got.map((d) => JSON.stringify(d)).sort()) ===
        JSON.stringify(node.got.map((d) => JSON.stringify(d)).sort()) &&
      ownIsClients(own, node),
  },
  {
    name: "own answers 400 to a malformed request after a complete answer, node only cuts",
    why: "node's server writes no 400 once its in-flight answer has started (its 404 is written within the same parse), it cuts the connection; own writes that answer, then the 400 for the malformed request, then closes",
    applies: (_c, own, node) =>
      JSON.stringify(own.statuses) === JSON.stringify([...node.statuses, 400]) &&
      ownIsClients(own, node),
  },
];

function isPrefix(a: Delivered[], b: Delivered[]): boolean {
  return a.length <= b.length && a.every((x, i) => JSON.stringify(x) === JSON.stringify(b[i]));
}

/** The allow rule a case's difference falls under ({} when none differs), or why it fails. */
function judge(c: Case, ownIn: Outcome, nodeIn: Outcome): { fail?: string; allowed?: string } {
  // 100 Continue: node's server sends it as soon as it reads an `Expect: 100-continue` head (no
  // 'checkContinue' listener); own sends it when the handler first reads the body, and not when
  // the body is already there or never read (RFC 9110 15.2.1 lets a server omit it; the client
  // may not wait for it). An interim answer, not an outcome: compared without it.
  const final = (o: Outcome): Outcome => ({ ...o, statuses: o.statuses.filter((x) => x !== 100) });
  const own = final(ownIn);
  const node = final(nodeIn);
  // The function's answers own's client got are those of the requests own delivered, in the
  // order delivered (one each, none shifted onto another request): no response desync.
  const echoes = [...own.out.matchAll(/\r\nx-echo: ([^\r]*)\r\n/gi)].map((m) =>
    decodeURIComponent(m[1] as string),
  );
  const sent = own.got.map((d) => `${d.method} ${d.url}`);
  if (echoes.some((e, i) => e !== sent[i]))
    return {
      fail: `own's client got answers ${JSON.stringify(echoes)} for ${JSON.stringify(sent)}`,
    };
  const sameGot = JSON.stringify(own.got) === JSON.stringify(node.got);
  const sameStatus = JSON.stringify(own.statuses) === JSON.stringify(node.statuses);
  if (sameGot && sameStatus) return {};
  for (const a of ALLOWED) if (a.applies(c, own, node)) return { allowed: a.name };
  if (!isPrefix(own.got, node.got))
    return {
      fail: `own delivered what node did not: own ${JSON.stringify(own.got)}, node ${JSON.stringify(node.got)}`,
    };
  if (!sameGot)
    return {
      fail: `own refused what node delivered: own ${JSON.stringify(own.got)}, node ${JSON.stringify(node.got)}`,
    };
  return {
    fail: `statuses own ${JSON.stringify(own.statuses)} node ${JSON.stringify(node.statuses)}`,
  };
}

describe("own front end against node's, differential (same raw bytes, real NATS)", function () {
  this.timeout(600_000);
  const gw: Record<"own" | "node", Harness | undefined> = { own: undefined, node: undefined };
  const instances: Instance[] = [];

  before(async () => {
    for (const frontend of ["own", "node"] as const) {
      const h = await startHarness({
        functions: Array.from({ length: SLOTS }, (_, i) => functionObject(`c${i}`)),
        triggers: [],
        env: {
          FIZZ_GATEWAY_FRONTEND: frontend,
          FIZZ_GATEWAY_HEADERS_TIMEOUT_MS: "20000",
          FIZZ_GATEWAY_REQUEST_TIMEOUT_MS: "30000",
          FIZZ_GATEWAY_KEEPALIVE_TIMEOUT_MS: "20000",
          FIZZ_GATEWAY_BODY_IDLE_TIMEOUT_MS: "0",
        },
      });
      gw[frontend] = h;
      for (let i = 0; i < SLOTS; i++) {
        const list: Delivered[] = [];
        delivered[frontend][i] = list;
        const inst = await startInstance(`${frontend}-c${i}`, recorder(list));
        instances.push(inst);
        h.leases.set(`c${i}`, () => leaseOf(inst, `c${i}`));
      }
    }
  });
  after(async () => {
    closeClients();
    await gw.own?.close();
    await gw.node?.close();
    for (const i of instances) await i.close();
  });

  const allowedCount = new Map<string, number>();
  async function runCase(c: Case, slot: number): Promise<string | undefined> {
    const outcome = async (fe: "own" | "node"): Promise<Outcome> => {
      const list = delivered[fe][slot] as Delivered[];
      list.length = 0;
      const r = await drive(gw[fe]!.gateway.port, c);
      await sleep(20); // an answer to the instance's last request may still be on its way in
      return { got: [...list], statuses: statuses(r.out), closed: r.closed, out: r.out };
    };
    const [own, node] = await Promise.all([outcome("own"), outcome("node")]);
    const { fail: why, allowed } = judge(c, own, node);
    if (allowed !== undefined) allowedCount.set(allowed, (allowedCount.get(allowed) ?? 0) + 1);
    if (why === undefined) return undefined;
    return `case ${c.index} (seed ${SEED}): ${why}\n  bytes ${JSON.stringify(c.bytes.toString("latin1"))} cuts ${JSON.stringify(c.cuts)}\n  own out ${JSON.stringify(own.out.slice(0, 400))}\n  node out ${JSON.stringify(node.out.slice(0, 400))}`;
  }

  it(`delivers to the function and answers the client as node's does, for ${CASES} generated byte streams`, async () => {
    console.log(`    differential fuzz: FIZZ_FUZZ_SEED=${SEED} FIZZ_FUZZ_CASES=${CASES}`);
    const t0 = Date.now();
    const failures: string[] = [];
    let next = 0;
    await Promise.all(
      Array.from({ length: SLOTS }, async (_, slot) => {
        while (next < CASES) {
          const c = makeCase(SEED, next++, slot);
          const f = await runCase(c, slot);
          if (f !== undefined) failures.push(f);
        }
      }),
    );
    for (const [k, n] of allowedCount) console.log(`    allowed difference x${n}: ${k}`);
    console.log(`    ${CASES} cases in ${Date.now() - t0} ms, ${failures.length} divergent`);
    // FIZZ_FUZZ_OUT=<file>: every divergent case written there (a long local run).
    if (process.env.FIZZ_FUZZ_OUT) writeFileSync(process.env.FIZZ_FUZZ_OUT, failures.join("\n\n"));
    expect(failures.slice(0, 10).join("\n\n"), `${failures.length} divergent`).to.equal("");
  });

  /** Found by the fuzz: a fixed stream whose outcome must match node's exactly (no allow-list). */
  async function same(bytes: string): Promise<void> {
    const c: Case = { index: -1, bytes: Buffer.from(bytes, "latin1"), cuts: [], features: [] };
    const outcome = async (fe: "own" | "node"): Promise<Outcome> => {
      const list = delivered[fe][0] as Delivered[];
      list.length = 0;
      const r = await drive(gw[fe]!.gateway.port, c);
      await sleep(20);
      return { got: [...list], statuses: statuses(r.out), closed: r.closed, out: r.out };
    };
    const own = await outcome("own");
    const node = await outcome("node");
    expect(node.got.length, "node delivers").to.be.greaterThan(0);
    // node runs pipelined requests' handlers at once: they reach the function in any order.
    const set = (o: Outcome): string[] => o.got.map((d) => JSON.stringify(d)).sort();
    expect({ got: set(own), statuses: own.statuses }).to.deep.equal({
      got: set(node),
      statuses: node.statuses,
    });
  }

  it("ignores an Expect of an HTTP/1.0 request as node's does (100-continue or other), and serves it", async () => {
    // Seed 1, case 1051: own answered 417 and closed; RFC 9110 10.1.1 says ignore it.
    await same(
      "PUT /function/c0/p0 HTTP/1.0\r\nConnection: keep-alive\r\nContent-Length: 5\r\nExpect: 100-Continue\r\nHost: x\r\n\r\nbbbb0" +
        "POST /function/c0/p1 HTTP/1.0\r\nHost: x\r\nExpect: foo\r\nContent-Length: 2\r\n\r\nb1",
    );
  });
});
