import { readFileSync } from "node:fs";
import http from "node:http";
import { expect } from "chai";
import { startNginxLb, type NginxLb } from "@fizz/testkit";
import { startEchoGateway, type EchoGateway } from "./echo-gateway";
import { closeClients } from "./harness";
import { oneRequest, prng, TOO_LARGE, type Outcome } from "./own-frontend-lb-traffic";

/**
 * The load-balancer canary: production puts nginx in front of the gateway, and nginx sends many
 * clients' requests over the same few upstream connections (`keepalive`), so a gateway that
 * answers on the wrong connection, shifts a pipelined answer, or closes a connection nginx is
 * about to reuse fails another client. 64 clients send a mix (GET/HEAD/POST/PUT, bodies empty to
 * 400 KB, chunked, 100-continue, slow readers, clients that go mid-request and mid-answer) through
 * nginx with request buffering on, then off (bodies passed on chunked as they come, answers
 * unbuffered), to a gateway on each front end; every answer must carry its own client's id and
 * the hash of its own body. (nginx answers a client's `Expect: 100-continue` itself and sends no
 * Expect upstream, so the gateway's own 100-continue is not reached through it.)
 *
 * FIZZ_LB_REQUESTS (400 per run), FIZZ_LB_SEED (another mix), FIZZ_LB_KINDS=get,early-answer
 * (narrow the mix) and FIZZ_LB_TIMES=1 (times per kind) help find a failure.
 */
const CLIENTS = 64;
const KEEPALIVE = 64;
const REQUESTS = Number(process.env.FIZZ_LB_REQUESTS ?? 400);
const SEED = Number(process.env.FIZZ_LB_SEED ?? 0);

/** The gateway's established connections (from nginx) right now: their peer ports. */
function gatewayConnections(port: number): number[] {
  const hex = port.toString(16).toUpperCase().padStart(4, "0");
  const peers: number[] = [];
  for (const line of readFileSync("/proc/net/tcp", "utf8").split("\n").slice(1)) {
    const f = line.trim().split(/\s+/);
    // local address, remote address, state (01: ESTABLISHED)
    if (f[1]?.endsWith(`:${hex}`) && f[3] === "01") peers.push(parseInt(f[2]!.split(":")[1]!, 16));
  }
  return peers;
}

interface RunStats {
  outcomes: Outcome[];
  maxOpen: number;
  /** Distinct nginx-side ports seen (sampled): a lower bound of the connections nginx opened. */
  distinct: number;
  ms: number;
}

async function drive(
  port: number,
  gatewayPort: number,
  seed: number,
  without: readonly string[],
): Promise<RunStats> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: CLIENTS });
  const rand = prng(seed);
  const outcomes: Outcome[] = [];
  let maxOpen = 0;
  const seen = new Set<number>();
  const sample = (): void => {
    const peers = gatewayConnections(gatewayPort);
    maxOpen = Math.max(maxOpen, peers.length);
    for (const p of peers) seen.add(p);
  };
  const sampler = setInterval(sample, 10);
  const started = performance.now();
  let next = 0;
  const client = async (): Promise<void> => {
    while (next < REQUESTS) {
      const i = next++;
      outcomes.push(await oneRequest(agent, port, `c${seed}-${i}`, rand, without));
    }
  };
  try {
    await Promise.all(Array.from({ length: CLIENTS }, client));
  } finally {
    clearInterval(sampler);
    agent.destroy();
  }
  sample();
  return { outcomes, maxOpen, distinct: seen.size, ms: performance.now() - started };
}

function summary(s: RunStats): string {
  const by = new Map<string, number>();
  const times = new Map<string, number[]>();
  for (const o of s.outcomes) {
    by.set(o.kind, (by.get(o.kind) ?? 0) + 1);
    if (process.env.FIZZ_LB_TIMES) times.set(o.kind, [...(times.get(o.kind) ?? []), o.ms]);
  }
  for (const [k, t] of times) {
    t.sort((a, b) => a - b);
    console.log(
      `        ${k}: median ${t[t.length >> 1]?.toFixed(1)} ms, max ${t[t.length - 1]?.toFixed(1)}`,
    );
  }
  const aborted = s.outcomes.filter((o) => o.aborted).length;
  return (
    `${s.outcomes.length} requests in ${Math.round(s.ms)} ms (${aborted} aborted), gateway ` +
    `connections: at most ${s.maxOpen} open, ${s.distinct} seen; ${JSON.stringify([...by])}`
  );
}

/** Errors nginx logged about the gateway (not a client's going: those are at info). */
function upstreamErrors(lb: NginxLb): string[] {
  return lb
    .errorLog()
    .split("\n")
    .filter((l) => /\[(error|crit|alert|emerg)\]/.test(l));
}

for (const frontend of ["own", "node"] as const) {
  describe(`gateway behind nginx with shared upstream connections: ${frontend} front end (real NATS, nginx)`, function () {
    this.timeout(Number(process.env.FIZZ_LB_TIMEOUT_MS ?? 60_000));
    let g: EchoGateway;
    let lb: NginxLb;

    before(async () => {
      g = await startEchoGateway(
        frontend,
        { FIZZ_MAX_BODY_BYTES: String(TOO_LARGE - 1), FIZZ_GATEWAY_BODY_IDLE_TIMEOUT_MS: "0" },
        256,
      );
      lb = await startNginxLb({
        upstream: `127.0.0.1:${g.port}`,
        keepalive: KEEPALIVE,
        variants: {
          // A request the gateway leaves unanswered fails as a 504 in 10 s, not the test's timeout.
          buffered: "proxy_read_timeout 10s;",
          // Bodies passed on as they come (chunked upstream), answers as they come.
          streaming: "proxy_read_timeout 10s; proxy_request_buffering off; proxy_buffering off;",
        },
      });
    });
    after(async () => {
      closeClients();
      await lb?.stop();
      await g?.close();
    });

    for (const variant of ["buffered", "streaming"] as const) {
      it(`request buffering ${variant === "buffered" ? "on" : "off"}: every answer reaches its own client, no 5xx, connections bounded`, async () => {
        const s = await drive(
          lb.ports[variant]!,
          g.port,
          SEED + (variant === "buffered" ? 1 : 2),
          [],
        );
        console.log(`      ${frontend}/${variant}: ${summary(s)}`);
        const wrong = s.outcomes
          .filter((o) => !o.aborted && o.problems.length > 0)
          .map((o) => `${o.kind}: ${o.problems.join("; ")}`);
        const log = upstreamErrors(lb).slice(0, 10).join("\n");
        expect(wrong.slice(0, 10), `${wrong.length} wrong answers; nginx: ${log}`).to.deep.equal(
          [],
        );
        expect(s.outcomes.filter((o) => !o.aborted && o.status >= 500)).to.deep.equal([]);
        expect(upstreamErrors(lb)).to.deep.equal([]);
        // nginx has at most one request per client in flight, and keeps KEEPALIVE idle.
        expect(s.maxOpen).to.be.at.most(CLIENTS + KEEPALIVE);
        // With a pool as large as the clients, connections are reused: new ones come of aborts
        // (nginx drops an upstream connection its client left mid-exchange) and of 413s (the
        // gateway closes after refusing a body), not of the gateway otherwise.
        const closing = s.outcomes.filter((o) => o.aborted || o.kind === "too-large").length;
        expect(s.distinct).to.be.at.most(CLIENTS + 2 * closing + 16);
      });
    }

    it("afterwards, idle connections are nginx's pool and a burst of 256 is answered whole", async () => {
      expect(gatewayConnections(g.port).length).to.be.at.most(KEEPALIVE);
      const agent = new http.Agent({ keepAlive: false });
      try {
        const port = lb.ports.streaming!;
        const rand = prng(3);
        const results = await Promise.all(
          Array.from({ length: 256 }, (_, i) =>
            oneRequest(agent, port, `burst-${i}`, () => rand() * 0.2),
          ),
        );
        const bad = results.filter((o) => o.problems.length > 0).map((o) => o.problems.join("; "));
        expect(bad.slice(0, 10), `${bad.length} wrong`).to.deep.equal([]);
      } finally {
        agent.destroy();
      }
    });
  });
}
