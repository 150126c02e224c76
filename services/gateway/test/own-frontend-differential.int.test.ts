import http from "node:http";
import { writeFileSync } from "node:fs";
import net, { type AddressInfo } from "node:net";
import { expect } from "chai";
import {
  closeClients,
  functionObject,
  leaseOf,
  startHarness,
  type Harness,
  type Instance,
} from "./harness";
import { makeCase, type Case } from "./own-frontend-fuzz";

/**
 * Differential fuzz of the own front end (FIZZ_GATEWAY_FRONTEND=own) against node's http.Server:
 * the same raw client byte stream, split at the same write boundaries, goes to a gateway on each;
 * what reached the function (method, path, headers, body) and the client's status sequence must
 * match, but for the differences listed in ALLOWED (each with its reason). The own front end must
 * never deliver a request node's would not.
 *
 * Seeded: FIZZ_FUZZ_SEED (default below, printed; `A-B` a range) and FIZZ_FUZZ_CASES (default
 * 500) reproduce a run; a failing case prints its seed, index and bytes (FIZZ_FUZZ_ONLY=<index>
 * replays it). A campaign: FIZZ_FUZZ_SEED=1-100 FIZZ_FUZZ_SLOTS=12 FIZZ_FUZZ_OUT=<file>, and
 * FIZZ_FUZZ_KIND (classic, mutated, headers, chunks, forms) for one kind of case.
 */
const SEED_ENV = process.env.FIZZ_FUZZ_SEED ?? "20261206";
/** One seed, or a range `A-B` (a long campaign in one process: the gateways start once). */
const SEEDS = ((): number[] => {
  const m = /^(\d+)-(\d+)$/.exec(SEED_ENV);
  if (!m) return [Number(SEED_ENV)];
  const out: number[] = [];
  for (let s = Number(m[1]); s <= Number(m[2]); s++) out.push(s);
  return out;
})();
const CASES = Number(process.env.FIZZ_FUZZ_CASES ?? 500);
/** FIZZ_FUZZ_ONLY=<index>: that case alone (a failure replayed). */
const ONLY =
  process.env.FIZZ_FUZZ_ONLY === undefined ? undefined : Number(process.env.FIZZ_FUZZ_ONLY);
/** Cases run at once, each on its own function (and instance) per front end. */
const SLOTS = Number(process.env.FIZZ_FUZZ_SLOTS ?? 6);
/** A case is over when its connection closed or nothing came for this long after the last write. */
const QUIET_MS = Number(process.env.FIZZ_FUZZ_QUIET_MS ?? 150);

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
      const echo = encodeURIComponent(`${req.method ?? ""} ${req.url ?? ""}`);
      // The second request of a case is answered late (pipelined ones wait behind it), the third
      // streamed without a length (chunked, or to the close on HTTP/1.0).
      const style = /p(\d+)(?!\d)/.exec(req.url ?? "")?.[1];
      if (style === "1") {
        setTimeout(() => {
          res.writeHead(200, { "content-length": "2", "x-echo": echo });
          res.end("ok");
        }, 30);
      } else if (style === "2") {
        res.writeHead(200, { "x-echo": echo });
        res.write("o");
        setTimeout(() => res.end("k"), 5);
      } else {
        res.writeHead(200, { "content-length": "2", "x-echo": echo });
        res.end("ok");
      }
    });
    req.on("error", () => undefined);
  };
}

/**
 * The function: node's http server, as harness.ts's instance, but taking every header the
 * gateway passes on (node's server keeps about 1000 by default: the front ends' differences in
 * header count would not show) and heads up to 64 KiB (the gateway adds its own).
 */
async function recordingInstance(
  id: string,
  handler: (req: http.IncomingMessage, res: http.ServerResponse) => void,
): Promise<Instance> {
  const server = http.createServer({ maxHeaderSize: 64 * 1024 }, handler);
  server.maxHeadersCount = 0;
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", () => resolve()));
  const port = (server.address() as AddressInfo).port;
  return {
    id,
    address: `http://127.0.0.1:${port}`,
    port,
    hits: 0,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Sends a case's bytes at its cuts; resolves with what came back once closed or quiet. */
async function drive(
  port: number,
  c: Case,
): Promise<{ out: string; closed: boolean; reset: boolean }> {
  const s = net.connect(port, "127.0.0.1");
  s.setNoDelay(true);
  let out = "";
  let closed = false;
  let reset = false;
  let last = Date.now();
  s.on("error", () => (reset = true));
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
  return { out, closed, reset };
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
  /** The client's socket failed (a reset: the server closed with its bytes unread). */
  reset: boolean;
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
/** node's server's test of an Expect (its values joined): 100-continue among others. */
const CONTINUE = /(?:^|\W)100-continue(?:$|\W)/i;

const startsWith = (a: number[], b: number[]): boolean => b.every((x, i) => a[i] === x);

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
    name: "a reset lost the last answer (either front end)",
    why: "a server that answers an error and closes while the client still writes resets the connection (the client's bytes unread); the client's kernel may then drop the error answer it had not read yet: node's server (closing at once) and own (closing once the answer is flushed) both meet it, by timing",
    applies: (_c, own, node) =>
      ((own.reset && startsWith(node.statuses, own.statuses)) ||
        (node.reset && startsWith(own.statuses, node.statuses))) &&
      own.closed &&
      node.closed &&
      ownIsClients(own, node),
  },
  {
    name: "more than 1000 header fields refused 431 by own",
    why: "node's server keeps 1000 fields in req.headers and about 1023 in rawHeaders (what the gateway reads), the rest unseen though llhttp acted on them (a Host past them: 400; a Transfer-Encoding: a body the gateway does not pass on); own refuses the head (431) and takes nothing after",
    applies: (c, own, node) => {
      const i = c.features.findIndex((f) => f.fields > 1000);
      return i >= 0 && own.statuses.at(-1) === 431 && ownIsClients(own, node, i - 1);
    },
  },
  {
    name: "no request taken after a refused Expect on own",
    why: "own closes the connection after its 417 to a request with a body (its client may send the body or not: what follows is not known to be a request); node keeps the connection and reads the body by its framing (a client that does not send it gets its next request read as that body)",
    applies: (c, own, node) => {
      const e = c.features.findIndex(
        (f) => f.http11 && f.expect !== undefined && !CONTINUE.test(f.expect),
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
      c.features.some((f) => f.http11 && f.expect !== undefined && CONTINUE.test(f.expect)) &&
      own.closed &&
      // Or node's answers cut short by a malformed request after (own closed before it).
      (startsWith(node.statuses, own.statuses) ||
        (node.closed && startsWith(own.statuses, node.statuses))) &&
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
    name: "requests after an answer that ends the connection are not run by own",
    why: "an answer ending its connection (HTTP/1.0 streamed to the close) leaves the requests pipelined after it unanswered on both; node's server has already run their handlers (it runs pipelined requests at once), so the function saw them; own runs them in turn and never starts them. The client sees the same answers",
    applies: (_c, own, node) => {
      const nodeSet = new Set(node.got.map((d) => JSON.stringify(d)));
      return (
        own.closed &&
        JSON.stringify(own.statuses) === JSON.stringify(node.statuses) &&
        own.got.every((d) => nodeSet.has(JSON.stringify(d))) &&
        ownIsClients(own, node)
      );
    },
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
  // A connection node's closes and own's leaves open holds a connection (and maybe a request).
  if (node.closed && !own.closed && !ownIn.statuses.includes(417))
    return {
      fail: `own left open a connection node closed (statuses ${JSON.stringify(own.statuses)})`,
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
  // A campaign (FIZZ_FUZZ_SEED=A-B) runs as long as it takes.
  this.timeout(SEEDS.length > 1 ? 0 : 600_000);
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
        const inst = await recordingInstance(`${frontend}-c${i}`, recorder(list));
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
  async function runCase(c: Case, slot: number, seed: number): Promise<string | undefined> {
    const outcome = async (fe: "own" | "node"): Promise<Outcome> => {
      const list = delivered[fe][slot] as Delivered[];
      list.length = 0;
      const r = await drive(gw[fe]!.gateway.port, c);
      await sleep(20); // an answer to the instance's last request may still be on its way in
      return {
        got: [...list],
        statuses: statuses(r.out),
        closed: r.closed,
        reset: r.reset,
        out: r.out,
      };
    };
    const [own, node] = await Promise.all([outcome("own"), outcome("node")]);
    const { fail: why, allowed } = judge(c, own, node);
    if (allowed !== undefined) allowedCount.set(allowed, (allowedCount.get(allowed) ?? 0) + 1);
    if (why === undefined) return undefined;
    return `case ${c.index} (seed ${seed}, ${c.kind}): ${why}\n  bytes ${JSON.stringify(c.bytes.toString("latin1"))} cuts ${JSON.stringify(c.cuts)} closed own ${own.closed} node ${node.closed}\n  own out ${JSON.stringify(own.out.slice(0, 400))}\n  node out ${JSON.stringify(node.out.slice(0, 400))}`;
  }

  it(`delivers to the function and answers the client as node's does, for ${CASES} generated byte streams`, async () => {
    console.log(`    differential fuzz: FIZZ_FUZZ_SEED=${SEED_ENV} FIZZ_FUZZ_CASES=${CASES}`);
    const t0 = Date.now();
    const failures: string[] = [];
    const flaky: string[] = [];
    const out = (): string =>
      [...failures, ...flaky.map((x) => `FLAKY (did not come again) ${x}`)].join("\n\n");
    for (const seed of SEEDS) {
      let next = 0;
      await Promise.all(
        Array.from({ length: SLOTS }, async (_, slot) => {
          while (next < CASES) {
            const index = next++;
            if (ONLY !== undefined && index !== ONLY) continue;
            const c = makeCase(seed, index, slot, process.env.FIZZ_FUZZ_KIND);
            let f = await runCase(c, slot, seed);
            // A divergence is run twice more: one that does not come again was the timing of a
            // busy machine (an answer later than QUIET_MS), kept apart (FIZZ_FUZZ_OUT).
            for (let again = 0; again < 2 && f !== undefined; again++) {
              const g = await runCase(c, slot, seed);
              if (g === undefined) {
                flaky.push(f);
                f = undefined;
              }
            }
            if (f !== undefined) failures.push(f);
          }
        }),
      );
      if (SEEDS.length > 1) {
        console.log(`    seed ${seed}: ${failures.length} divergent, ${flaky.length} once`);
        if (process.env.FIZZ_FUZZ_OUT) writeFileSync(process.env.FIZZ_FUZZ_OUT, out());
      }
    }
    for (const [k, n] of allowedCount) console.log(`    allowed difference x${n}: ${k}`);
    const total = CASES * SEEDS.length;
    console.log(
      `    ${total} cases in ${Date.now() - t0} ms, ${failures.length} divergent, ${flaky.length} divergent once (timing)`,
    );
    // FIZZ_FUZZ_OUT=<file>: every divergent case written there (a long local run).
    if (process.env.FIZZ_FUZZ_OUT) writeFileSync(process.env.FIZZ_FUZZ_OUT, out());
    expect(failures.slice(0, 10).join("\n\n"), `${failures.length} divergent`).to.equal("");
  });

  /** Found by the fuzz: a fixed stream whose outcome must match node's exactly (no allow-list). */
  async function same(bytes: string): Promise<void> {
    const c: Case = {
      index: -1,
      kind: "fixed",
      bytes: Buffer.from(bytes, "latin1"),
      cuts: [],
      features: [],
    };
    const outcome = async (fe: "own" | "node"): Promise<Outcome> => {
      const list = delivered[fe][0] as Delivered[];
      list.length = 0;
      const r = await drive(gw[fe]!.gateway.port, c);
      await sleep(20);
      return {
        got: [...list],
        statuses: statuses(r.out),
        closed: r.closed,
        reset: r.reset,
        out: r.out,
      };
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
