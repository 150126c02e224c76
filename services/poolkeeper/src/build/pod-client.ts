import { createHash } from "node:crypto";
import { createReadStream, createWriteStream } from "node:fs";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { FizzError } from "@fizz/events";
import { request, type Dispatcher } from "undici";

/**
 * The poolkeeper's side of a builder pod's POST /build (runtimes/builder/server.mjs): the JSON
 * line and the source tar.gz streamed up; the JSON line (outcome, log) and the raw deployment
 * tar.gz streamed down into `outFile`, cut at `maxBytes`. The deployment is the pod's word only:
 * the caller canonicalizes it under the archive rules before anything else reads it.
 */
export interface PodBuildRequest {
  runtime: string | null;
  buildCommand?: string;
  env?: Record<string, string>;
  timeoutSeconds: number;
}

export type PodBuildReply = { ok: true; log: string } | { ok: false; message: string; log: string };

const LINE_MAX = 1024 * 1024;

export async function postBuild(o: {
  address: string;
  token: string;
  body: PodBuildRequest;
  sourceFile: string;
  outFile: string;
  /** Largest raw deployment accepted from the pod. */
  maxBytes: number;
  signal: AbortSignal;
  dispatcher?: Dispatcher;
}): Promise<PodBuildReply> {
  const digest = await sha256File(o.sourceFile);
  const line = `${JSON.stringify({ ...o.body, digest })}\n`;
  async function* body() {
    yield Buffer.from(line);
    for await (const chunk of createReadStream(o.sourceFile)) yield chunk as Buffer;
  }
  const res = await request(`${o.address}/build`, {
    method: "POST",
    headers: {
      authorization: `Bearer ${o.token}`,
      "content-type": "application/vnd.fizz.build+tar",
    },
    body: Readable.from(body()),
    signal: o.signal,
    // The build itself may take the environment's whole time limit.
    headersTimeout: (o.body.timeoutSeconds + 60) * 1000,
    bodyTimeout: (o.body.timeoutSeconds + 60) * 1000,
    ...(o.dispatcher ? { dispatcher: o.dispatcher } : {}),
  });
  if (res.statusCode !== 200) {
    const text = (await res.body.text()).slice(0, 500);
    throw new FizzError("INTERNAL", `builder pod answered ${res.statusCode}: ${text}`);
  }
  let head = Buffer.alloc(0);
  let reply: PodBuildReply | undefined;
  let written = 0;
  const out = createWriteStream(o.outFile, { mode: 0o600 });
  await pipeline(
    res.body,
    async function* (src: AsyncIterable<Buffer>) {
      for await (const chunk of src) {
        let data = chunk;
        if (!reply) {
          head = Buffer.concat([head, data]);
          const nl = head.indexOf(0x0a);
          if (nl < 0) {
            if (head.length > LINE_MAX)
              throw new FizzError("INTERNAL", "builder pod reply line too long");
            continue;
          }
          reply = parseReply(head.subarray(0, nl).toString("utf8"));
          data = head.subarray(nl + 1);
        }
        written += data.length;
        if (written > o.maxBytes)
          throw new FizzError("PAYLOAD_TOO_LARGE", `deployment over ${o.maxBytes} bytes`);
        if (data.length > 0) yield data;
      }
    },
    out,
  );
  if (!reply) throw new FizzError("INTERNAL", "builder pod sent no reply line");
  return reply;
}

function parseReply(text: string): PodBuildReply {
  const v = JSON.parse(text) as Record<string, unknown>;
  const log = typeof v.log === "string" ? v.log : "";
  if (v.ok === true) return { ok: true, log };
  return { ok: false, message: typeof v.message === "string" ? v.message : "build failed", log };
}

async function sha256File(file: string): Promise<string> {
  const hash = createHash("sha256");
  for await (const chunk of createReadStream(file)) hash.update(chunk as Buffer);
  return `sha256:${hash.digest("hex")}`;
}
