import http from "node:http";
import https from "node:https";
import { z } from "zod";
import { FizzError, HTTP_METHODS } from "@fizz/events";

/**
 * The console's "invoke" form: the registry calls a function through the configured gateway
 * (FIZZ_GATEWAY_URL) at `/function/<name>.<ns><suffix>` and hands back the answer. The host and
 * port come only from the configuration: the request names a method, a path suffix, headers and a
 * body, never a URL, so this cannot be turned into a proxy to anywhere else.
 */
export const INVOKE_MAX_BODY_BYTES = 1024 * 1024;
export const INVOKE_MAX_ANSWER_BYTES = 1024 * 1024;
const MAX_HEADERS = 64;

/**
 * Hop-by-hop headers belong to one connection, not to the call; X-Fizz-* are the platform's own
 * (instance ids, route parameters) and are never forwarded either way.
 */
const HOP_BY_HOP = new Set([
  "connection",
  "keep-alive",
  "proxy-authenticate",
  "proxy-authorization",
  "proxy-connection",
  "te",
  "trailer",
  "transfer-encoding",
  "upgrade",
  "host",
  "content-length",
]);

export function forwardable(name: string): boolean {
  const n = name.toLowerCase();
  return !HOP_BY_HOP.has(n) && !n.startsWith("x-fizz-");
}

const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
// A suffix is a path below the function (or only a query): no dot segments, so it cannot climb
// to another function's /function/ path; visible ASCII only (no backslashes, spaces, controls,
// fragments, nor characters Node would refuse to send: those are percent-encoded by the caller).
const SUFFIX = /^(?:\/[!-"$->@-[\]-~]*)?(?:\?[!-"$-~]*)?$/;

export const InvokeRequest = z
  .object({
    method: z.enum(HTTP_METHODS).default("GET"),
    path: z
      .string()
      .max(2048)
      .regex(
        SUFFIX,
        "must be empty or start with '/' or '?' (a path below the function), in visible ASCII (percent-encode the rest)",
      )
      .refine(
        (p) => !/(^|\/)(\.|%2e){1,2}(\/|$|\?)/i.test(p.split("?")[0] ?? ""),
        "must not contain '.' or '..' segments",
      )
      .refine(
        (p) => !(p.split("?")[0] ?? "").includes("//"),
        "must not contain empty segments ('//')",
      )
      .default(""),
    headers: z
      .record(
        z.string().regex(TOKEN, "header names must be HTTP tokens"),
        z
          .string()
          // What Node sends as is (it throws on anything else): tab, printable ASCII, Latin-1.
          .regex(
            /^[\t\x20-\x7e\x80-\xff]*$/,
            "header values must be one line of printable ASCII or Latin-1 (no control characters)",
          )
          .max(8192),
      )
      .refine((h) => Object.keys(h).length <= MAX_HEADERS, `at most ${MAX_HEADERS} headers`)
      .default({}),
    body: z.string().default(""),
    bodyEncoding: z.enum(["utf8", "base64"]).default("utf8"),
  })
  .strict();
export type InvokeRequest = z.infer<typeof InvokeRequest>;

export interface InvokeAnswer {
  status: number;
  headers: [string, string][];
  body: string;
  /** `base64` when the answer is not valid UTF-8. */
  bodyEncoding: "utf8" | "base64";
  /** The answer was longer than INVOKE_MAX_ANSWER_BYTES and was cut there. */
  truncated: boolean;
  durationMs: number;
}

export function parseInvoke(body: unknown): InvokeRequest & { bytes: Buffer } {
  const r = InvokeRequest.safeParse(body);
  if (!r.success) {
    const issue = r.error.issues[0];
    const field = issue?.path.map(String).join(".") || "body";
    const message =
      issue?.code === "unrecognized_keys"
        ? `unknown field ${issue.keys.map((k) => JSON.stringify(k)).join(", ")} (the target is always the configured gateway)`
        : (issue?.message ?? "invalid");
    throw new FizzError("VALIDATION_FAILED", `${field}: ${message}`, {
      field: issue?.code === "unrecognized_keys" ? (issue.keys[0] ?? field) : field,
    });
  }
  const bytes = Buffer.from(r.data.body, r.data.bodyEncoding === "base64" ? "base64" : "utf8");
  if (bytes.length > INVOKE_MAX_BODY_BYTES)
    throw new FizzError(
      "PAYLOAD_TOO_LARGE",
      `body: larger than the console's limit of ${INVOKE_MAX_BODY_BYTES} bytes`,
      { field: "body" },
    );
  return { ...r.data, bytes };
}

export interface InvokeTarget {
  /** FIZZ_GATEWAY_URL. */
  gatewayUrl: string;
  timeoutMs: number;
}

/** Calls `<gateway>/function/<name>.<ns><suffix>` and reads at most INVOKE_MAX_ANSWER_BYTES. */
export function invokeFunction(
  target: InvokeTarget,
  namespace: string,
  name: string,
  req: InvokeRequest & { bytes: Buffer },
): Promise<InvokeAnswer> {
  const base = new URL(target.gatewayUrl);
  const prefix = base.pathname.replace(/\/+$/, "");
  const headers: Record<string, string> = {};
  for (const [k, v] of Object.entries(req.headers)) if (forwardable(k)) headers[k] = v;
  if (req.bytes.length > 0 || !["GET", "HEAD"].includes(req.method))
    headers["content-length"] = String(req.bytes.length);
  const started = performance.now();
  const client = base.protocol === "https:" ? https : http;
  return new Promise((resolve, reject) => {
    const outgoing = client.request(
      {
        protocol: base.protocol,
        hostname: base.hostname.replace(/^\[|\]$/g, ""),
        port: base.port || (base.protocol === "https:" ? 443 : 80),
        method: req.method,
        path: `${prefix}/function/${name}.${namespace}${req.path}`,
        headers,
        agent: false,
        timeout: target.timeoutMs,
      },
      (res) => {
        const chunks: Buffer[] = [];
        let size = 0;
        let truncated = false;
        res.on("data", (c: Buffer) => {
          if (truncated) return;
          const room = INVOKE_MAX_ANSWER_BYTES - size;
          if (c.length > room) {
            chunks.push(c.subarray(0, room));
            size += room;
            truncated = true;
            // Stop reading: the rest is not shown, and must not fill the registry's memory.
            res.destroy();
            done();
            return;
          }
          chunks.push(c);
          size += c.length;
        });
        res.on("end", done);
        res.on("error", (err) => (truncated ? undefined : fail(err)));
        let sent = false;
        function done() {
          if (sent) return;
          sent = true;
          clearTimeout(deadline);
          const bytes = Buffer.concat(chunks);
          const text = utf8(bytes);
          const out: [string, string][] = [];
          const raw = res.rawHeaders;
          for (let i = 0; i + 1 < raw.length; i += 2)
            if (forwardable(raw[i]!)) out.push([raw[i]!.toLowerCase(), raw[i + 1]!]);
          resolve({
            status: res.statusCode ?? 0,
            headers: out,
            body: text ?? bytes.toString("base64"),
            bodyEncoding: text === undefined ? "base64" : "utf8",
            truncated,
            durationMs: Math.round(performance.now() - started),
          });
        }
      },
    );
    // The whole call, answer included, is bounded (the socket timeout only sees idleness).
    const deadline = setTimeout(() => {
      outgoing.destroy(
        new FizzError("TIMEOUT", `the function did not answer within ${target.timeoutMs} ms`),
      );
    }, target.timeoutMs);
    outgoing.on("timeout", () =>
      outgoing.destroy(
        new FizzError("TIMEOUT", `the function did not answer within ${target.timeoutMs} ms`),
      ),
    );
    function fail(err: unknown) {
      clearTimeout(deadline);
      if (err instanceof FizzError) return reject(err);
      reject(
        new FizzError(
          "UNAVAILABLE",
          `the gateway at ${base.origin} could not be reached: ${(err as Error).message}`,
          { retryable: true },
        ),
      );
    }
    outgoing.on("error", fail);
    outgoing.end(req.bytes.length > 0 ? req.bytes : undefined);
  });
}

function utf8(bytes: Buffer): string | undefined {
  try {
    return new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    return undefined;
  }
}
