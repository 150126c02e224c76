import { rng } from "./own-frontend-fuzz";
import { createHash, randomBytes } from "node:crypto";
import http from "node:http";

/**
 * The traffic of the load-balancer canary (own-frontend-lb.int.test.ts): many clients behind one
 * nginx whose upstream connections to the gateway are shared, each request naming itself (`id`
 * in its URL and in a header) so an answer that reaches another client shows.
 */
export const hash = (b: Buffer): string =>
  createHash("sha256").update(b).digest("hex").slice(0, 16);

/** What the function answers: `<id>;` repeated to `size` bytes. */
export function fill(id: string, size: number): Buffer {
  return size === 0 ? Buffer.alloc(0) : Buffer.alloc(size, `${id};`);
}

/** The function: echoes the request's id and its body's hash, answers `size` bytes of its id. */
export function echoHandler(req: http.IncomingMessage, res: http.ServerResponse): void {
  const chunks: Buffer[] = [];
  req.on("error", () => undefined);
  res.on("error", () => undefined);
  if (req.url?.includes("early=1")) {
    // Answers before the body is read: the gateway must drop the rest, on a shared connection.
    const id = new URL(req.url, "http://x").searchParams.get("id") ?? "";
    res.writeHead(200, { "x-echo-id": id, "content-length": String(id.length) });
    res.end(id);
    return;
  }
  req.on("data", (c: Buffer) => chunks.push(c));
  req.on("end", () => {
    const body = Buffer.concat(chunks);
    const url = new URL(req.url ?? "/", "http://x");
    const id = url.searchParams.get("id") ?? "";
    const out = fill(id, Number(url.searchParams.get("size") ?? 0));
    const head: http.OutgoingHttpHeaders = {
      "x-echo-id": id,
      "x-echo-header-id": String(req.headers["x-client-id"]),
      "x-body-hash": hash(body),
      "x-body-length": String(body.length),
      "x-method": req.method,
    };
    if (url.searchParams.get("stream") === "1") {
      // No length: the gateway frames it chunked, in two parts a tick apart.
      res.writeHead(200, head);
      res.write(out.subarray(0, out.length >> 1));
      setImmediate(() => res.end(out.subarray(out.length >> 1)));
      return;
    }
    res.writeHead(200, { ...head, "content-length": String(out.length) });
    res.end(out);
  });
}

type Kind =
  | "get"
  | "head"
  | "post-empty"
  | "post-small"
  | "put-large"
  | "post-chunked"
  | "continue"
  | "slow-reader"
  | "big-stream"
  | "abort-request"
  | "abort-answer"
  | "early-answer"
  | "no-route"
  | "too-large";
/** The mix, by weight: mostly plain requests, a few aborts. */
const FULL_MIX: [Kind, number][] = [
  ["get", 20],
  ["head", 8],
  ["post-empty", 6],
  ["post-small", 20],
  ["put-large", 8],
  ["post-chunked", 12],
  ["continue", 6],
  ["slow-reader", 3],
  ["big-stream", 6],
  ["abort-request", 5],
  ["abort-answer", 5],
  ["early-answer", 4],
  ["no-route", 3],
  ["too-large", 2],
];
/** FIZZ_LB_KINDS=get,no-route narrows the mix (to find which kind a failure comes of). */
const ONLY = process.env.FIZZ_LB_KINDS?.split(",");
const MIX = FULL_MIX.filter(([k]) => ONLY === undefined || ONLY.includes(k));

/** Past the gateway's FIZZ_MAX_BODY_BYTES (the test sets it to 1 MiB): a 413. */
export const TOO_LARGE = (1 << 20) + 1;

/** A small seeded PRNG (the fuzz's), so a failing run can be repeated. */
export const prng = rng;

function pick(r: number, without: readonly string[]): Kind {
  const mix = MIX.filter(([k]) => !without.includes(k));
  let x = r * mix.reduce((n, [, w]) => n + w, 0);
  for (const [k, w] of mix) if ((x -= w) < 0) return k;
  return "get";
}

export interface Outcome {
  kind: Kind;
  /** Sent to be cut off: its answer is not checked. */
  aborted: boolean;
  /** What was wrong with the answer (empty: all right). */
  problems: string[];
  status: number;
  ms: number;
}

/** Random bytes (not from the seed: only their hash is compared, and the seed's are slow). */
function bodyOf(_rand: () => number, n: number): Buffer {
  return randomBytes(n);
}

/** With FIZZ_LB_TRACE: requests sent and not yet settled (a hang shows which kind). */
export const inFlight = new Map<string, string>();

/** One request of the mix through `port` (nginx), checked against what it sent. */
export function oneRequest(
  agent: http.Agent,
  port: number,
  id: string,
  rand: () => number,
  /** Kinds left out of the mix. */
  without: readonly string[] = [],
): Promise<Outcome> {
  const kind = pick(rand(), without);
  const method =
    kind === "get" || kind.startsWith("slow") || kind.startsWith("big") || kind === "abort-answer"
      ? "GET"
      : kind === "head"
        ? "HEAD"
        : kind === "put-large" || kind === "abort-request" || kind === "early-answer"
          ? "PUT"
          : "POST";
  const size =
    kind === "abort-answer"
      ? 1 << 20
      : kind === "slow-reader"
        ? 1 << 19
        : kind === "big-stream"
          ? 300_000
          : Math.floor(rand() * 4000);
  const stream = kind === "big-stream" || kind === "slow-reader" || rand() < 0.2;
  const body =
    kind === "too-large"
      ? bodyOf(rand, TOO_LARGE)
      : kind === "put-large" || kind === "abort-request" || kind === "early-answer"
        ? bodyOf(rand, 200_000 + Math.floor(rand() * 200_000))
        : kind === "post-empty" || method === "GET" || method === "HEAD"
          ? Buffer.alloc(0)
          : bodyOf(rand, 1 + Math.floor(rand() * 8000));
  const chunked = kind === "post-chunked" || kind === "abort-request";
  const headers: http.OutgoingHttpHeaders = { "x-client-id": id };
  if (!chunked && method !== "GET" && method !== "HEAD") headers["content-length"] = body.length;
  if (kind === "continue") headers.expect = "100-continue";
  const path =
    kind === "no-route"
      ? `/nowhere/${id}`
      : `/function/lb/echo?id=${id}&size=${size}${stream ? "&stream=1" : ""}${kind === "early-answer" ? "&early=1" : ""}`;
  const wantStatus = kind === "no-route" ? 404 : kind === "too-large" ? 413 : 200;
  const aborted = kind === "abort-request" || kind === "abort-answer";
  const out: Outcome = { kind, aborted, problems: [], status: 0, ms: 0 };
  const t0 = performance.now();
  if (process.env.FIZZ_LB_TRACE) inFlight.set(id, kind);
  return new Promise((settle) => {
    const resolve = (o: Outcome): void => {
      inFlight.delete(id);
      settle(o);
    };
    const req = http.request({ host: "127.0.0.1", port, method, path, headers, agent }, (res) => {
      out.status = res.statusCode ?? 0;
      const parts: Buffer[] = [];
      res.on("data", (c: Buffer) => {
        parts.push(c);
        if (kind === "abort-answer") req.destroy();
        else if (kind === "slow-reader") {
          res.pause();
          setTimeout(() => res.resume(), 1);
        }
      });
      res.on("error", () => undefined);
      res.on("close", () => {
        out.ms = performance.now() - t0;
        if (aborted) return resolve(out);
        const got = Buffer.concat(parts);
        const p = out.problems;
        const h = res.headers;
        if (!res.complete) p.push("answer cut off");
        if (out.status !== wantStatus)
          p.push(`status ${out.status}: ${got.toString().slice(0, 200)}`);
        else if (kind === "early-answer") {
          if (h["x-echo-id"] !== id || got.toString() !== id)
            p.push(`early answer of ${got.toString()}`);
        } else if (wantStatus === 200) {
          if (h["x-echo-id"] !== id) p.push(`answer of ${String(h["x-echo-id"])}`);
          if (h["x-echo-header-id"] !== id) p.push(`header of ${String(h["x-echo-header-id"])}`);
          if (h["x-method"] !== method) p.push(`method ${String(h["x-method"])}`);
          if (h["x-body-hash"] !== hash(body))
            p.push(`body ${String(h["x-body-length"])} bytes, sent ${body.length}`);
          const want = method === "HEAD" ? Buffer.alloc(0) : fill(id, size);
          if (!got.equals(want))
            p.push(`answer body ${got.length} bytes: ${got.subarray(0, 40).toString()}`);
        }
        resolve(out);
      });
    });
    req.on("error", (err) => {
      out.ms = performance.now() - t0;
      if (!aborted) out.problems.push(`client error ${err.message}`);
      resolve(out);
    });
    if (kind === "continue") req.on("continue", () => req.end(body));
    else if (kind === "abort-request") {
      req.write(body.subarray(0, 65_536));
      setTimeout(() => req.destroy(), 5);
    } else if (chunked) {
      // In parts a tick apart, so they go out (and on, unbuffered) as separate chunks.
      const step = Math.ceil(body.length / 4);
      let at = 0;
      const more = (): void => {
        if (at >= body.length) return void req.end();
        req.write(body.subarray(at, (at += step)));
        setImmediate(more);
      };
      more();
    } else req.end(body);
  });
}
