import {
  Codecs,
  FizzError,
  type Instance,
  type ObjectsByPlural,
  type SpecializeRequest,
  type Subjects,
} from "@fizz/events";
import { publish, request, type NatsConnection } from "@fizz/kit";
import type { RegistryClient } from "./catalog";
import type { PoolkeeperRestarts } from "./poolkeeper-restarts";

/** What the scheduler asks of the poolkeeper. */
export interface PoolkeeperClient {
  specialize(req: SpecializeRequest): Promise<Instance>;
  /** Resolves false when the poolkeeper no longer had the instance. */
  retire(instanceId: string, reason: string): Promise<boolean>;
  list(): Promise<Instance[]>;
}

/** scheduler.instances.<ns>.<fn>: tells gateways to stop using instances at once. */
export interface InstancesPublisher {
  removed(namespace: string, name: string, revision: number, removed: string[]): void;
}

export function natsRegistry(
  nc: NatsConnection,
  s: Subjects,
  sender: string,
  timeoutMs: number,
): RegistryClient {
  return {
    async get<K extends "functions" | "environments">(kind: K, namespace: string, name: string) {
      const reply = await request(
        nc,
        s.registryGet,
        Codecs.registryGet,
        { kind, namespace, name },
        { sender, timeoutMs },
      );
      const want = kind === "functions" ? "Function" : "Environment";
      if (reply.object.kind !== want) {
        throw new FizzError(
          "INTERNAL",
          `registry.get ${kind} ${namespace}/${name} answered a ${reply.object.kind}`,
        );
      }
      return reply.object as ObjectsByPlural[K];
    },
  };
}

export function natsPoolkeeper(
  nc: NatsConnection,
  s: Subjects,
  sender: string,
  opts: { specializeTimeoutMs: number; rpcTimeoutMs: number },
  restarts?: PoolkeeperRestarts,
): PoolkeeperClient {
  const rpc = { sender, timeoutMs: opts.rpcTimeoutMs };
  // list replies name the poolkeeper answering: the one a restarted scheduler knows first.
  const list = Codecs.poolkeeperList;
  const listSeeing = {
    ...list,
    reply: {
      ...list.reply,
      decode: (b: Uint8Array) => {
        const env = list.reply.decode(b);
        restarts?.observe(env.sender);
        return env;
      },
    },
  } as typeof list;
  return {
    async specialize(req) {
      const asked = request(nc, s.poolkeeperSpecialize, Codecs.poolkeeperSpecialize, req, {
        sender,
        timeoutMs: opts.specializeTimeoutMs,
      });
      const reply = await (restarts ? restarts.guard(asked, "poolkeeper.specialize") : asked);
      return reply.instance;
    },
    async retire(instanceId, reason) {
      return (
        await request(nc, s.poolkeeperRetire, Codecs.poolkeeperRetire, { instanceId, reason }, rpc)
      ).retired;
    },
    async list() {
      return (await request(nc, s.poolkeeperList, listSeeing, {}, rpc)).instances;
    },
  };
}

export function natsPublisher(nc: NatsConnection, s: Subjects, sender: string): InstancesPublisher {
  return {
    removed(namespace, name, revision, removed) {
      publish(
        nc,
        s.schedulerInstances(namespace, name),
        Codecs.schedulerInstances,
        {
          namespace,
          function: name,
          revision,
          removed,
        },
        sender,
      );
    },
  };
}
