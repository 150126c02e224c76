import http from "node:http";
import type { AddressInfo } from "node:net";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import {
  Codecs,
  FizzError,
  subjects,
  type FunctionObject,
  type HttpTrigger,
  type HttpTriggerSpec,
  type Lease,
  type LeaseRequest,
  type RegistryChanged,
  type RegistryGetRequest,
} from "@fizz/events";
import { publish, serve, silentLogger, type Subscription } from "@fizz/kit";
import { startNats, type TestServer } from "@fizz/testkit";
import { loadConfig, start, type Gateway } from "../src/index";

/**
 * The world around one gateway, played by the test over a REAL nats-server: a registry answering
 * `registry.list`, a scheduler answering `scheduler.lease` from per-function handlers, and
 * instances that are small node:http servers following the runtime contract.
 */
export const PREFIX = "fizz.v1";
export const subj = subjects(PREFIX);
const log = silentLogger();

export function functionObject(name: string, namespace = "default", revision = 1): FunctionObject {
  const now = new Date().toISOString();
  return {
    apiVersion: "fizz.dev/v1",
    kind: "Function",
    metadata: {
      namespace,
      name,
      uid: `uid-${namespace}-${name}`,
      revision,
      labels: {},
      createdAt: now,
      updatedAt: now,
    },
    spec: {
      environment: "node",
      code: { filename: "f.js", digest: `sha256:${"0".repeat(64)}`, size: 1 },
      minInstances: 0,
      maxInstances: 10,
      timeoutSeconds: 60,
      idleTimeoutSeconds: 120,
    },
  };
}

export function triggerObject(
  name: string,
  spec: Partial<HttpTriggerSpec> & { function: string },
  namespace = "default",
): HttpTrigger {
  const now = new Date().toISOString();
  return {
    apiVersion: "fizz.dev/v1",
    kind: "HttpTrigger",
    metadata: {
      namespace,
      name,
      uid: `uid-t-${namespace}-${name}`,
      revision: 1,
      labels: {},
      createdAt: now,
      updatedAt: now,
    },
    spec: { methods: [], ...spec },
  };
}

export type LeaseHandler = (req: LeaseRequest) => Lease | Promise<Lease>;

export interface Harness {
  nats: TestServer;
  nc: NatsConnection;
  gateway: Gateway;
  /** Every lease request the scheduler got. */
  leaseCalls: LeaseRequest[];
  /** Per function name: how the scheduler answers (missing → NOT_FOUND). */
  leases: Map<string, LeaseHandler>;
  /** What `registry.list` and `registry.get` answer from; tests change them in place. */
  functions: FunctionObject[];
  triggers: HttpTrigger[];
  /** Every registry.get the registry got. */
  gets: RegistryGetRequest[];
  callsFor(fn: string): LeaseRequest[];
  changed(ev: Omit<RegistryChanged, "revision"> & { revision?: number }): void;
  stopScheduler(): void;
  startScheduler(): void;
  close(): Promise<void>;
}

export async function startHarness(opts: {
  functions: FunctionObject[];
  triggers: HttpTrigger[];
  env?: Record<string, string>;
}): Promise<Harness> {
  const nats = await startNats();
  const nc = await connect({ servers: nats.url });
  const leaseCalls: LeaseRequest[] = [];
  const leases = new Map<string, LeaseHandler>();
  const functions = [...opts.functions];
  const triggers = [...opts.triggers];
  const subs: Subscription[] = [];
  const gets: RegistryGetRequest[] = [];
  subs.push(
    serve(
      nc,
      subj.registryGet,
      Codecs.registryGet,
      (req) => {
        gets.push(req);
        const list: (FunctionObject | HttpTrigger)[] =
          req.kind === "functions" ? functions : req.kind === "httptriggers" ? triggers : [];
        const object = list.find(
          (o) => o.metadata.namespace === req.namespace && o.metadata.name === req.name,
        );
        if (!object)
          return Promise.reject(new FizzError("NOT_FOUND", `${req.kind} ${req.name} not found`));
        return Promise.resolve({ object });
      },
      { sender: "registry-test", logger: log },
    ),
  );
  subs.push(
    serve(
      nc,
      subj.registryList,
      Codecs.registryList,
      (req) =>
        Promise.resolve({
          items: req.kind === "functions" ? functions : req.kind === "httptriggers" ? triggers : [],
        }),
      { sender: "registry-test", logger: log },
    ),
  );
  let scheduler: Subscription | undefined;
  const startScheduler = () => {
    scheduler = serve(
      nc,
      subj.schedulerLease,
      Codecs.schedulerLease,
      async (req) => {
        leaseCalls.push(req);
        const handler = leases.get(req.function);
        if (!handler) throw new FizzError("NOT_FOUND", `function ${req.function} not found`);
        return { lease: await handler(req) };
      },
      { sender: "scheduler-test", logger: log },
    );
  };
  startScheduler();
  await nc.flush();

  const config = loadConfig({
    FIZZ_NATS_URL: nats.url,
    FIZZ_GATEWAY_PORT: "0",
    FIZZ_REPORT_INTERVAL_MS: "100",
    FIZZ_LEASE_TIMEOUT_MS: "3000",
    FIZZ_GATEWAY_DRAIN_MS: "2000",
    // The whole suite can run on the own front end: FIZZ_GATEWAY_FRONTEND=own npx mocha ...
    ...(process.env.FIZZ_GATEWAY_FRONTEND
      ? { FIZZ_GATEWAY_FRONTEND: process.env.FIZZ_GATEWAY_FRONTEND }
      : {}),
    ...opts.env,
  });
  const gateway = await start(config, { logger: log });
  await gateway.ready;
  return {
    nats,
    nc,
    gateway,
    leaseCalls,
    leases,
    functions,
    triggers,
    gets,
    callsFor: (fn) => leaseCalls.filter((c) => c.function === fn),
    changed: (ev) =>
      publish(
        nc,
        subj.registryChanged(ev.kind),
        Codecs.registryChanged,
        { ...ev, revision: ev.revision ?? ev.object.metadata.revision },
        "registry-test",
      ),
    stopScheduler: () => scheduler?.unsubscribe(),
    startScheduler,
    close: async () => {
      await gateway.stop();
      for (const s of subs) s.unsubscribe();
      scheduler?.unsubscribe();
      await nc.close();
      await nats.cleanup();
    },
  };
}

// Instances -----------------------------------------------------------------------------------

export interface Instance {
  id: string;
  address: string;
  port: number;
  /** Requests that reached the function (after the X-Fizz-Instance check). */
  hits: number;
  close(): Promise<void>;
}

export type InstanceHandler = (req: http.IncomingMessage, res: http.ServerResponse) => void;

/** Echoes what the function would see: method, url, headers, body. */
export const echo: InstanceHandler = (req, res) => {
  const chunks: Buffer[] = [];
  req.on("data", (c: Buffer) => chunks.push(c));
  req.on("end", () => {
    const body = JSON.stringify({
      method: req.method,
      url: req.url,
      headers: req.headers,
      body: Buffer.concat(chunks).toString(),
    });
    res.writeHead(200, {
      "content-type": "application/json",
      "content-length": Buffer.byteLength(body),
    });
    res.end(body);
  });
};

/** A runtime-contract instance: 421 to a request naming another instance, else `handler`. */
export async function startInstance(
  id: string,
  handler: InstanceHandler = echo,
): Promise<Instance> {
  const inst: Instance = { id, address: "", port: 0, hits: 0, close: () => Promise.resolve() };
  const server = http.createServer((req, res) => {
    const expected = req.headers["x-fizz-instance"];
    if (expected !== undefined && expected !== id) {
      const body = JSON.stringify({
        error: { code: "MISDIRECTED", message: "wrong instance", retryable: true },
      });
      res.writeHead(421, {
        "content-type": "application/json",
        "content-length": Buffer.byteLength(body),
      });
      res.end(body);
      return;
    }
    inst.hits++;
    handler(req, res);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", () => resolve()));
  inst.port = (server.address() as AddressInfo).port;
  inst.address = `http://127.0.0.1:${inst.port}`;
  inst.close = () =>
    new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    });
  return inst;
}

export function leaseOf(
  inst: { id: string; address: string },
  fn: string,
  over: Partial<Omit<Lease, "function">> & { revision?: number; namespace?: string } = {},
): Lease {
  const { revision = 1, namespace = "default", ...rest } = over;
  return {
    instanceId: inst.id,
    address: inst.address,
    function: { namespace, name: fn, revision },
    slots: 10,
    concurrency: 10,
    timeoutMs: 5000,
    ...rest,
  };
}

// Client ---------------------------------------------------------------------------------------

export interface Reply {
  status: number;
  headers: http.IncomingHttpHeaders;
  text: string;
  json<T = Record<string, unknown>>(): T;
}

const agent = new http.Agent({ keepAlive: true, maxSockets: 256 });

/** One request to the gateway with node:http (it sends any header, hop-by-hop ones included). */
export function call(
  port: number,
  method: string,
  path: string,
  opts: { headers?: http.OutgoingHttpHeaders; body?: string | Buffer } = {},
): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      { host: "127.0.0.1", port, method, path, headers: opts.headers, agent },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () => {
          const text = Buffer.concat(chunks).toString();
          resolve({
            status: res.statusCode ?? 0,
            headers: res.headers,
            text,
            // The caller names the shape it expects (a test reply); JSON.parse cannot check it.
            json: <T>() => JSON.parse(text) as T,
          });
        });
        res.on("error", reject);
      },
    );
    req.on("error", reject);
    req.end(opts.body);
  });
}

export function closeClients(): void {
  agent.destroy();
}

export function deferred<T = void>(): { promise: Promise<T>; resolve: (v: T) => void } {
  let resolve!: (v: T) => void;
  const promise = new Promise<T>((r) => (resolve = r));
  return { promise, resolve };
}

/** Rejects after `ms` so a broken stream fails the test quickly instead of hanging it. */
export function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    p.finally(() => clearTimeout(timer)),
    new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)),
        ms,
      );
    }),
  ]);
}
