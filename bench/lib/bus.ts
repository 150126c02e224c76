import { connect, type NatsConnection } from "@nats-io/transport-node";
import { Agent, request } from "undici";
import { round } from "./stats";

/**
 * NATS-triggered invocations per second end to end, next to HTTP invocations of the same function
 * in the same run:
 * - core: a message-queue trigger without a stream; the bench is a NATS client sending requests
 *   (CONCURRENCY in flight) that the function answers (request/reply through the gateway);
 * - jetstream: a trigger on a stream; N messages published, timed until all N answers arrived on
 *   the trigger's response subject (stored, pulled by the gateway's durable consumer, acked);
 * - http: the same kind of client (Node, CONCURRENCY in flight) doing GET through the gateway for
 *   the same duration, so the three figures share a load generator.
 */
export interface BusBenchResult {
  core_rps: number;
  jetstream_rps: number;
  http_rps: number;
  core_p50_ms: number;
  core_errors: number;
  jetstream_messages: number;
  jetstream_lost: number;
  http_errors: number;
  concurrency: number;
  seconds: number;
}

type Api = (method: string, path: string, body?: unknown) => Promise<unknown>;

export async function benchBus(opts: {
  natsUrl: string;
  gatewayUrl: string;
  api: Api;
  fn: string;
  seconds: number;
  concurrency: number;
  jetstreamMessages: number;
}): Promise<BusBenchResult> {
  const { api, fn, concurrency, seconds } = opts;
  await api("POST", "/v1/namespaces/default/mqtriggers", {
    name: "bench-core",
    spec: { function: fn, subject: "bench.core" },
  });
  await api("POST", "/v1/namespaces/default/mqtriggers", {
    name: "bench-js",
    spec: { function: fn, subject: "bench.js", stream: "BENCH", responseSubject: "bench-done.js" },
  });
  const nc = await connect({ servers: opts.natsUrl, name: "bench" });
  try {
    // The registry answered after the update barrier: the subscription is live. Warm up anyway.
    await closedLoop(seconds > 3 ? 2 : 1, concurrency, () =>
      nc.request("bench.core", BODY, { timeout: 5000 }),
    );
    const core = await closedLoop(seconds, concurrency, () =>
      nc.request("bench.core", BODY, { timeout: 5000 }),
    );
    const js = await jetstreamRun(nc, opts.jetstreamMessages);
    const agent = new Agent({ connections: concurrency, pipelining: 1 });
    const url = `${opts.gatewayUrl}/function/${fn}`;
    const httpCall = async () => {
      const res = await request(url, { dispatcher: agent });
      await res.body.dump();
      if (res.statusCode !== 200) throw new Error(`HTTP ${res.statusCode}`);
    };
    await closedLoop(1, concurrency, httpCall);
    const http = await closedLoop(seconds, concurrency, httpCall);
    await agent.close();
    return {
      core_rps: round(core.rps, 0),
      jetstream_rps: round(js.rps, 0),
      http_rps: round(http.rps, 0),
      core_p50_ms: round(core.p50Ms, 3),
      core_errors: core.errors,
      jetstream_messages: opts.jetstreamMessages,
      jetstream_lost: js.lost,
      http_errors: http.errors,
      concurrency,
      seconds,
    };
  } finally {
    await nc.close();
  }
}

const BODY = new TextEncoder().encode('{"bench":true}');

/** `concurrency` workers calling `once` back to back for `seconds`. */
async function closedLoop(
  seconds: number,
  concurrency: number,
  once: () => Promise<unknown>,
): Promise<{ rps: number; p50Ms: number; errors: number }> {
  const until = performance.now() + seconds * 1000;
  const times: number[] = [];
  let errors = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (performance.now() < until) {
        const t = performance.now();
        try {
          await once();
          times.push(performance.now() - t);
        } catch {
          errors++;
        }
      }
    }),
  );
  const elapsed = (performance.now() - started) / 1000;
  times.sort((a, b) => a - b);
  return {
    rps: times.length / elapsed,
    p50Ms: times[Math.floor(times.length / 2)] ?? NaN,
    errors,
  };
}

/** Publishes `n` messages to the JetStream trigger's subject; done when `n` answers arrived. */
async function jetstreamRun(nc: NatsConnection, n: number): Promise<{ rps: number; lost: number }> {
  let got = 0;
  let done!: () => void;
  const all = new Promise<void>((resolve) => (done = resolve));
  const sub = nc.subscribe("bench-done.js", {
    callback: () => {
      if (++got === n) done();
    },
  });
  await nc.flush();
  const started = performance.now();
  for (let i = 0; i < n; i++) {
    nc.publish("bench.js", BODY);
    if (i % 500 === 499) await nc.flush(); // do not outrun the server's buffers
  }
  await nc.flush();
  const timeout = new Promise<void>((resolve) => setTimeout(resolve, 120_000));
  await Promise.race([all, timeout]);
  const elapsed = (performance.now() - started) / 1000;
  sub.unsubscribe();
  return { rps: got / elapsed, lost: n - got };
}
