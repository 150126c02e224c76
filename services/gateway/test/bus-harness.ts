import http from "node:http";
import type { AddressInfo } from "node:net";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import {
  Codecs,
  FizzError,
  type AnyObject,
  type FunctionObject,
  type GatewaySyncRequest,
  type MessageQueueTrigger,
  type MessageQueueTriggerSpec,
} from "@fizz/events";
import { publish, request, serve, silentLogger, type Subscription } from "@fizz/kit";
import { startNats, type TestServer } from "@fizz/testkit";
import { loadConfig, start, type Gateway, type GatewayDeps } from "../src/index";
import { subj, type LeaseHandler } from "./harness";

/**
 * The world around gateways for the bus tests, over a REAL nats-server with JetStream: a registry
 * answering `registry.list`/`registry.get` for functions and mq triggers, a scheduler answering
 * `scheduler.lease` per function, and any number of gateways (started, stopped, killed by the
 * test). Instances are the runtime-contract servers of `harness.ts`.
 */
const log = silentLogger();

export const BUS_ENV = {
  FIZZ_GATEWAY_PORT: "0",
  FIZZ_REPORT_INTERVAL_MS: "100",
  FIZZ_LEASE_TIMEOUT_MS: "3000",
  FIZZ_GATEWAY_DRAIN_MS: "2000",
  FIZZ_INVOKER_RETRY_BASE_MS: "50",
  FIZZ_INVOKER_RETRY_MAX_MS: "200",
  FIZZ_INVOKER_ACK_WAIT_MS: "2000",
  // Callback receivers listen on 127.0.0.1: opened the way an operator would open a host.
  FIZZ_OUTBOUND_ALLOW: "127.0.0.1",
};

export function mqTrigger(
  name: string,
  spec: Partial<MessageQueueTriggerSpec> & { function: string; subject: string },
  revision = 1,
  namespace = "default",
): MessageQueueTrigger {
  const now = new Date().toISOString();
  return {
    apiVersion: "fizz.dev/v1",
    kind: "MessageQueueTrigger",
    metadata: {
      namespace,
      name,
      uid: `uid-mqt-${namespace}-${name}`,
      revision,
      labels: {},
      createdAt: now,
      updatedAt: now,
    },
    spec: { maxRetries: 3, contentType: "application/json", ...spec },
  };
}

export interface BusWorld {
  nats: TestServer;
  nc: NatsConnection;
  functions: FunctionObject[];
  mqtriggers: MessageQueueTrigger[];
  leases: Map<string, LeaseHandler>;
  gateways: Gateway[];
  startGateway(env?: Record<string, string>, deps?: GatewayDeps): Promise<Gateway>;
  /** Publishes `registry.changed.<kind>` as the registry would. */
  changed(
    kind: "functions" | "mqtriggers",
    op: "created" | "updated" | "deleted",
    o: AnyObject,
  ): void;
  /** How many `registry.get` requests the registry answered. */
  gets(): number;
  /** The registry's barrier question, answered by one gateway. */
  sync(req: GatewaySyncRequest): Promise<{ gateway: string; applied: boolean }>;
  close(): Promise<void>;
}

export async function startBusWorld(opts: {
  functions: FunctionObject[];
  mqtriggers?: MessageQueueTrigger[];
}): Promise<BusWorld> {
  const nats = await startNats();
  const nc = await connect({ servers: nats.url, maxReconnectAttempts: -1, reconnectTimeWait: 100 });
  const functions = [...opts.functions];
  const mqtriggers = [...(opts.mqtriggers ?? [])];
  const leases = new Map<string, LeaseHandler>();
  const gateways: Gateway[] = [];
  let gets = 0;
  const items = (kind: string): AnyObject[] =>
    kind === "functions" ? functions : kind === "mqtriggers" ? mqtriggers : [];
  const subs: Subscription[] = [
    serve(
      nc,
      subj.registryGet,
      Codecs.registryGet,
      (req) => {
        gets++;
        const object = items(req.kind).find(
          (o) => o.metadata.namespace === req.namespace && o.metadata.name === req.name,
        );
        if (!object)
          return Promise.reject(new FizzError("NOT_FOUND", `${req.kind} ${req.name} not found`));
        return Promise.resolve({ object });
      },
      { sender: "registry-test", logger: log },
    ),
    serve(
      nc,
      subj.registryList,
      Codecs.registryList,
      (req) => Promise.resolve({ items: items(req.kind) }),
      {
        sender: "registry-test",
        logger: log,
      },
    ),
    serve(
      nc,
      subj.schedulerLease,
      Codecs.schedulerLease,
      async (req) => {
        const handler = leases.get(req.function);
        if (!handler) throw new FizzError("NOT_FOUND", `function ${req.function} not found`);
        return { lease: await handler(req) };
      },
      { sender: "scheduler-test", logger: log },
    ),
  ];
  await nc.flush();
  return {
    nats,
    nc,
    functions,
    mqtriggers,
    leases,
    gateways,
    gets: () => gets,
    startGateway: async (env = {}, deps = {}) => {
      const config = loadConfig({
        FIZZ_NATS_URL: nats.url,
        ...BUS_ENV,
        // FIZZ_GATEWAY_FRONTEND=own npx mocha ...: these tests on the own front end.
        ...(process.env.FIZZ_GATEWAY_FRONTEND
          ? { FIZZ_GATEWAY_FRONTEND: process.env.FIZZ_GATEWAY_FRONTEND }
          : {}),
        ...env,
      });
      const g = await start(config, { logger: log, ...deps });
      gateways.push(g);
      await g.ready;
      await g.busReady;
      return g;
    },
    changed: (kind, op, object) =>
      publish(
        nc,
        subj.registryChanged(kind),
        Codecs.registryChanged,
        {
          kind,
          op,
          namespace: object.metadata.namespace,
          name: object.metadata.name,
          revision: object.metadata.revision,
          object,
        },
        "registry-test",
      ),
    sync: (req) =>
      request(nc, subj.gatewaySync, Codecs.gatewaySync, req, {
        sender: "registry-test",
        timeoutMs: 5000,
      }),
    close: async () => {
      await Promise.all(gateways.map((g) => g.stop().catch(() => undefined)));
      for (const s of subs) s.unsubscribe();
      await nc.close();
      await nats.cleanup();
    },
  };
}

/** What a test function saw of one call. */
export interface Seen {
  method: string;
  url: string;
  headers: http.IncomingHttpHeaders;
  body: string;
}

/** A plain HTTP server receiving callbacks (or anything), recording each request. */
export async function startReceiver(
  answer: (seen: Seen) => number = () => 200,
): Promise<{ url: string; got: Seen[]; close(): Promise<void> }> {
  const got: Seen[] = [];
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const seen: Seen = {
        method: req.method ?? "",
        url: req.url ?? "",
        headers: req.headers,
        body: Buffer.concat(chunks).toString(),
      };
      got.push(seen);
      res.writeHead(answer(seen));
      res.end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", () => resolve()));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/callback`,
    got,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

/** Reads a request's body, then answers through `respond` (instance handlers of the tests). */
export function withBody(
  respond: (req: http.IncomingMessage, body: string, res: http.ServerResponse) => void,
): (req: http.IncomingMessage, res: http.ServerResponse) => void {
  return (req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => respond(req, Buffer.concat(chunks).toString(), res));
  };
}

export function reply(
  res: http.ServerResponse,
  status: number,
  body: string,
  headers: Record<string, string> = {},
): void {
  res.writeHead(status, {
    "content-type": "text/plain",
    "content-length": Buffer.byteLength(body),
    ...headers,
  });
  res.end(body);
}

export const sleepMs = (ms: number) => new Promise((r) => setTimeout(r, ms));
