import { FizzError } from "./errors";
import { isDnsLabel } from "./names";
import type { KindPlural } from "./objects";

export const DEFAULT_SUBJECT_PREFIX = "fizz.v1";

/** Events a poolkeeper publishes about its instances. */
export const InstanceEvents = ["ready", "specialized", "died", "retired"] as const;
export type InstanceEvent = (typeof InstanceEvents)[number];

/**
 * Every subject the services use, under one prefix. Namespace and function names become subject
 * tokens, so they are checked here: a name holding '.', '*' or '>' would widen a subscription or
 * land on another function's subject.
 */
export function subjects(prefix: string = DEFAULT_SUBJECT_PREFIX) {
  if (!/^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$/.test(prefix)) {
    throw new FizzError(
      "VALIDATION_FAILED",
      `subject prefix "${prefix}" is not a plain NATS subject`,
      {
        field: "prefix",
      },
    );
  }
  const p = prefix;
  const fn = (what: string, ns: string, name: string) =>
    `${p}.${what}.${token(ns, "namespace")}.${token(name, "function")}`;
  return {
    prefix: p,
    registryChanged: (kind: KindPlural) => `${p}.registry.changed.${kind}`,
    registryChangedAll: `${p}.registry.changed.*`,
    registryGet: `${p}.registry.get`,
    registryList: `${p}.registry.list`,
    /** Builder → registry: a build started or ended (BuildReport). */
    registryBuildReport: `${p}.registry.build.report`,
    /** Poolkeeper → registry: secret and configmap values (only the poolkeeper may ask). */
    registryConfigRead: `${p}.registry.config.read`,
    /** The FIZZ_BUILDS work-queue stream's subject (BuildRequest). */
    buildRequested: `${p}.builds.requested`,
    schedulerLease: `${p}.scheduler.lease`,
    schedulerReport: `${p}.scheduler.report`,
    schedulerInstances: (ns: string, name: string) => fn("scheduler.instances", ns, name),
    schedulerInstancesAll: `${p}.scheduler.instances.*.*`,
    /** Registry → every gateway (request-many): "have you applied this change?" (update barrier). */
    gatewaySync: `${p}.gateway.sync`,
    /** Gateway heartbeat, so the registry knows how many answers a barrier waits for. */
    gatewayPresence: `${p}.gateway.presence`,
    /** Registry → every gateway (request-many): per-function history for the console. */
    gatewayStats: `${p}.gateway.stats`,
    poolkeeperSpecialize: `${p}.poolkeeper.specialize`,
    poolkeeperRetire: `${p}.poolkeeper.retire`,
    poolkeeperList: `${p}.poolkeeper.list`,
    poolkeeperInstance: (event: InstanceEvent) => `${p}.poolkeeper.instance.${event}`,
    poolkeeperInstanceAll: `${p}.poolkeeper.instance.*`,
    invoke: (ns: string, name: string) => fn("invoke", ns, name),
    invokeAll: `${p}.invoke.>`,
    dead: (ns: string, name: string) => fn("dead", ns, name),
    /** Function log lines (LogLine), kept in the LOG_STREAM stream. */
    logs: (ns: string, name: string) => fn("logs", ns, name),
    logsAll: `${p}.logs.>`,
  };
}
export type Subjects = ReturnType<typeof subjects>;

function token(value: string, field: string): string {
  if (!isDnsLabel(value)) {
    throw new FizzError("INVALID_NAME", `${field} "${value}" is not a DNS-1123 label`, { field });
  }
  return value;
}
