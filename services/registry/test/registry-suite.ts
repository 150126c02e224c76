import { DEFAULT_REDIS_PREFIX } from "@fizz/events";
import { silentLogger, type Logger } from "@fizz/kit";
import { waitFor } from "@fizz/testkit";
import { expect } from "chai";
import { Redis } from "ioredis";
import { fnIndexBuiltKey } from "../src/function-index";
import { RedisStore } from "../src/store";
import {
  envBody,
  fnBody,
  registryEnv,
  startRegistry,
  startStack,
  type Api,
  type Running,
  type Stack,
} from "./helpers";

// The set-up the console listing's and the function index's tests share: a stack and a registry
// per test file, objects created through the API, a second store on the same Redis (another
// replica), the function index dropped as a store written before it, and one function's row.

/**
 * Starts real NATS and Redis and a registry on them before the suite's own `before` hooks (call it
 * first in a `describe`), and stops both after it. The answer's fields are set once they run.
 */
export function registrySuite(opts: { logger?: Logger } = {}): {
  readonly stack: Stack;
  readonly reg: Running;
} {
  let stack: Stack | undefined;
  let reg: Running | undefined;
  before(async () => {
    stack = await startStack();
    reg = await startRegistry(registryEnv(stack), opts.logger ? { logger: opts.logger } : {});
  });
  after(async () => {
    await reg?.svc.stop();
    await stack?.cleanup();
  });
  return {
    get stack() {
      if (!stack) throw new Error("registrySuite: the stack is not started (outside a test?)");
      return stack;
    },
    get reg() {
      if (!reg) throw new Error("registrySuite: the registry is not started (outside a test?)");
      return reg;
    },
  };
}

/** Creates an object through the API, failing the test (with the answer) unless it is 201. */
export async function created(api: Api, ns: string, kind: string, body: unknown): Promise<void> {
  const res = await api.ns(ns).create(kind, body);
  expect(res.status, `${ns} ${kind} ${JSON.stringify(res.body)}`).to.equal(201);
}

/** An environment `env` (python image) and functions of these names on it, in one namespace. */
export async function createFunctions(
  api: Api,
  ns: string,
  env: string,
  names: readonly string[],
): Promise<void> {
  await created(api, ns, "environments", envBody(env));
  for (const name of names) await created(api, ns, "functions", fnBody(name, env));
}

/** `GET /v1/console/functions/{ns}/{fn}`'s row, failing the test unless it is 200. */
export async function consoleRow<Row>(api: Api, ns: string, fn: string): Promise<Row> {
  const res = await api.call("GET", `/v1/console/functions/${ns}/${fn}`);
  expect(res.status, JSON.stringify(res.body)).to.equal(200);
  return (res.body as unknown as { item: Row }).item;
}

/**
 * A second store on the stack's Redis, as another replica (its own transactions, its own start-up
 * build), ready; `close` stops it and its client.
 */
export async function secondStore(
  stack: Stack,
  name: string,
): Promise<{ store: RedisStore; close: () => Promise<void> }> {
  const client = new Redis(stack.redis.url);
  const store = new RedisStore({
    url: stack.redis.url,
    prefix: DEFAULT_REDIS_PREFIX,
    client,
    name,
    logger: silentLogger(),
  });
  await waitFor(() => store.ready(), { what: "store ready" });
  return {
    store,
    close: async () => {
      await store.close();
      client.disconnect();
    },
  };
}

/**
 * As a Redis written before the function index: its built marker deleted (readers fall back to the
 * namespace scan), and with `sets`, every set too.
 */
export async function dropFunctionIndex(
  stack: Stack,
  opts: { sets?: boolean } = {},
): Promise<void> {
  const keys = opts.sets
    ? await stack.client.keys(`${DEFAULT_REDIS_PREFIX}fnidx:*`)
    : [fnIndexBuiltKey(DEFAULT_REDIS_PREFIX)];
  if (keys.length > 0) await stack.client.del(...keys);
}
