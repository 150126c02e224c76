import { subjects as buildSubjects } from "./subjects";
import { DEFAULT_REDIS_PREFIX } from "./redis-keys";
import { ARCHIVE_BUCKET, BUILD_STREAM } from "./packages";
import { LOG_STREAM } from "./logs";

/**
 * Who may say what on the bus and touch what in the store, as data: the launcher turns it into the
 * nats-server and redis-server configuration, k8s/ into the Secrets' config, and the unit tests
 * check each rule. Deny wins over allow in nats-server, which is what keeps `>` grants safe.
 *
 * Imports only relative files: the launcher loads it through tsx before anything is built.
 */

export const SERVICE_USERS = [
  "registry",
  "scheduler",
  "poolkeeper",
  "gateway",
  "kubewatcher",
] as const;
export type ServiceUser = (typeof SERVICE_USERS)[number];
/** The documented application user: triggers functions by publishing on user subjects. */
export const APP_USER = "app";
export const NATS_USERS = [...SERVICE_USERS, APP_USER] as const;
export type NatsUser = (typeof NATS_USERS)[number];

/**
 * Services that keep state in Redis; the others get no Redis credentials at all. The poolkeeper
 * reads code and archives from the Object Store (ARCHIVE_BUCKET) and secrets through the registry.
 */
export const REDIS_USERS = ["registry", "scheduler"] as const;
export type RedisUser = (typeof REDIS_USERS)[number];

export interface SubjectRule {
  allow: string[];
  deny: string[];
}
export interface NatsPermission {
  publish: SubjectRule;
  subscribe: SubjectRule;
  /** Lets a user answer a request it received, on that request's reply subject only. */
  allowResponses: boolean;
}

/**
 * Each service's replies arrive on its own inbox prefix (set by connectNats), so the app user,
 * which must subscribe to `_INBOX.>` for its own requests, never sees a service's answers.
 */
export function serviceInboxPrefix(user: ServiceUser): string {
  return `_INBOX_${user}`;
}

/**
 * The scheduler's timer leader lock (kit's LeaderElection): a NATS KV bucket, so the scheduler's
 * user is granted its KV subjects below. Named here so the grant and the code share one name.
 */
export const TIMER_LEADER_BUCKET = "fizz_timer_leader";

/** Subjects only the server and the services may use: JetStream, KV, object store, system. */
export const SYSTEM_SUBJECTS = ["$JS.>", "$KV.>", "$O.>", "$SYS.>"];

export function natsPermissions(prefix?: string): Record<NatsUser, NatsPermission> {
  const s = buildSubjects(prefix);
  const p = s.prefix;
  const inbox = (u: ServiceUser) => [`${serviceInboxPrefix(u)}.>`, "_INBOX.>"];
  const jsApi = ["$JS.API.>", "$JS.ACK.>", "$JS.FC.>"];
  const js = [...jsApi, "$KV.>"];
  const registryReaders = [s.registryGet, s.registryList];
  // Object Store: chunks and metadata of the archive bucket, nothing else under $O.
  const archives = [...jsApi, `$O.${ARCHIVE_BUCKET}.>`];
  // The JetStream API of the archive and build streams: services that need the API for their
  // own streams (gateway, kubewatcher) must not read every function's code through it, nor purge
  // or delete these streams; nor read function logs (LOG_STREAM: only the poolkeeper writes it,
  // only the registry reads it for users). Covers STREAM.<op>.<s>, CONSUMER.<op>.<s>.…, DIRECT.GET.<s>.…,
  // STREAM.MSG.GET.<s>, CONSUMER.MSG.NEXT.<s>.<consumer>.
  const privateStreamApis = [`OBJ_${ARCHIVE_BUCKET}`, BUILD_STREAM.name, LOG_STREAM.name].flatMap(
    (st) => [
      `$JS.API.*.*.${st}`,
      `$JS.API.*.*.${st}.>`,
      `$JS.API.*.*.*.${st}`,
      `$JS.API.*.*.*.${st}.>`,
    ],
  );
  const rule = (allow: string[], deny: string[] = []): SubjectRule => ({ allow, deny });
  return {
    registry: {
      publish: rule([
        `${p}.registry.changed.>`,
        s.gatewaySync,
        s.buildRequested,
        // The console: per-function history from every gateway, pools and instances.
        s.gatewayStats,
        s.poolkeeperList,
        ...archives,
      ]),
      subscribe: rule([
        s.registryGet,
        s.registryList,
        s.registryBuildReport,
        s.registryConfigRead,
        s.gatewayPresence,
        ...inbox("registry"),
      ]),
      allowResponses: true,
    },
    scheduler: {
      publish: rule(
        [
          `${p}.poolkeeper.specialize`,
          s.poolkeeperRetire,
          s.poolkeeperList,
          `${p}.scheduler.instances.>`,
          // Timers fire through the invocations stream.
          `${p}.invoke.>`,
          ...registryReaders,
          // KV writes only to its timer leader lock (reads go through $JS.API). The JetStream API
          // grant still lets it manage streams: this is least privilege for KV, not a sandbox.
          ...jsApi,
          `$KV.${TIMER_LEADER_BUCKET}.>`,
        ],
        privateStreamApis,
      ),
      subscribe: rule([
        s.poolkeeperInstanceAll,
        `${p}.scheduler.>`,
        `${p}.registry.changed.>`,
        ...inbox("scheduler"),
      ]),
      allowResponses: true,
    },
    poolkeeper: {
      publish: rule([
        s.poolkeeperInstanceAll,
        `${p}.logs.>`,
        ...registryReaders,
        // Builds: reports to the registry; archives read for specialize, written by builds.
        s.registryBuildReport,
        s.registryConfigRead,
        ...archives,
      ]),
      subscribe: rule([
        s.poolkeeperSpecialize,
        s.poolkeeperRetire,
        s.poolkeeperList,
        `${p}.registry.changed.>`,
        ...inbox("poolkeeper"),
      ]),
      allowResponses: true,
    },
    // Subject triggers subscribe to, and answer on, any user subject, so the gateway gets `>`
    // minus what only others may send.
    gateway: {
      publish: rule(
        [">"],
        [
          `${p}.poolkeeper.>`,
          `${p}.registry.changed.>`,
          s.gatewaySync,
          `${p}.logs.>`,
          "$SYS.>",
          // Secret values, build results and archives are the registry's and poolkeeper's.
          s.registryConfigRead,
          s.registryBuildReport,
          s.buildRequested,
          "$O.>",
          ...privateStreamApis,
        ],
      ),
      // Never another service's replies (the registry's sync requests are answered by publishing).
      subscribe: rule(
        [">"],
        [
          "$SYS.>",
          ...SERVICE_USERS.filter((u) => u !== "gateway").map((u) => `${serviceInboxPrefix(u)}.>`),
          // Never see who asks for secret values or reports builds (nor answer in their place).
          s.registryConfigRead,
          s.registryBuildReport,
        ],
      ),
      allowResponses: true,
    },
    kubewatcher: {
      publish: rule([`${p}.invoke.>`, ...registryReaders, ...js], privateStreamApis),
      subscribe: rule([`${p}.registry.changed.>`, ...inbox("kubewatcher")]),
      allowResponses: true,
    },
    // Everything outside the platform: publish and request on user subjects, read own replies.
    [APP_USER]: {
      publish: rule(
        [">"],
        [
          `${p}.>`,
          ...SYSTEM_SUBJECTS,
          "_INBOX.>",
          ...SERVICE_USERS.map((u) => `${serviceInboxPrefix(u)}.>`),
        ],
      ),
      subscribe: rule(["_INBOX.>"]),
      allowResponses: true,
    },
  };
}

/**
 * Redis ACL rules per service (after `user <name> on >password`): only the platform's keys, no
 * pub/sub channels, nothing administrative.
 */
export function redisAclRules(prefix?: string): Record<RedisUser, string> {
  const keys = `~${prefix ?? DEFAULT_REDIS_PREFIX}*`;
  const base = `resetkeys ${keys} resetchannels`;
  const hello = "+info +client|setname +client|getname +client|id +ping +hello +auth";
  return {
    registry: `${base} +@all -@admin -@dangerous ${hello}`,
    scheduler: `${base} +@all -@admin -@dangerous ${hello}`,
  };
}

/**
 * Whether a NATS subject matches a permission pattern (`*` one token, `>` the rest): what the
 * server does, so tests can evaluate the rules above without a server.
 */
export function subjectMatches(pattern: string, subject: string): boolean {
  const pt = pattern.split(".");
  const st = subject.split(".");
  for (let i = 0; i < pt.length; i++) {
    if (pt[i] === ">") return st.length > i;
    if (i >= st.length) return false;
    if (pt[i] !== "*" && pt[i] !== st[i]) return false;
  }
  return pt.length === st.length;
}

/** Whether a rule lets a concrete subject through (deny wins). */
export function permits(rule: SubjectRule, subject: string): boolean {
  return (
    rule.allow.some((a) => subjectMatches(a, subject)) &&
    !rule.deny.some((d) => subjectMatches(d, subject))
  );
}

/**
 * Whether the gateway may answer a user's message on the reply subject the message names. NATS
 * does not check a publisher's permissions against the reply field, so without this a client
 * could name `$JS.API.STREAM.DELETE.<stream>`, a KV key or a platform subject as its "reply" and
 * have the gateway publish the function's answer there with the gateway's own, broad rights.
 * Allowed: plain client inboxes (`_INBOX.…`, what every NATS client uses by default) and user
 * subjects; refused: anything under the platform prefix, `$…` system subjects, and the
 * services' own inboxes (`_INBOX_<service>.…`).
 */
export function isUserReplySubject(subject: string, prefix: string): boolean {
  const first = subject.split(".")[0] ?? "";
  if (subject === "" || /[\s*>]/.test(subject)) return false;
  if (first === "_INBOX") return true;
  if (first.startsWith("$") || first.startsWith("_INBOX")) return false;
  return subject !== prefix && !subject.startsWith(`${prefix}.`);
}
