import {
  FizzError,
  Streams,
  TRIGGER_KINDS,
  type AnyObject,
  type MessageQueueTrigger,
  type MessageQueueTriggerSpec,
  type WatchTriggerSpec,
} from "@fizz/events";
import { pluralOf, type StoreReader } from "./store";

/**
 * Rules for the triggers that are not HTTP routes, decided from the object and the operator's
 * settings (`checkTriggerScope`) or against what is stored (`findFunctionUsers`,
 * `findQueueGroupConflict`, called inside the write's transaction).
 */
export interface TriggerRuleOptions {
  /** The platform's own subject prefix (`fizz.v1`): user triggers never touch subjects under it. */
  subjectPrefix: string;
  /** FIZZ_WATCH_CLUSTER_SCOPE: may a watch trigger watch another namespace than its own? */
  watchClusterScope: boolean;
}

/** Objects that invoke a function: `spec.function` must exist, and keeps the function in use. */
export function isTrigger(
  obj: AnyObject,
): obj is Extract<AnyObject, { spec: { function: string } }> {
  return (TRIGGER_KINDS as readonly string[]).includes(pluralOf(obj));
}

/** The checks that need no store: subjects and streams of mq triggers, the scope of watches. */
export function checkTriggerScope(obj: AnyObject, opts: TriggerRuleOptions): void {
  if (obj.kind === "MessageQueueTrigger") checkMessageQueue(obj.spec, opts.subjectPrefix);
  else if (obj.kind === "WatchTrigger")
    checkWatchScope(obj.spec, obj.metadata.namespace, opts.watchClusterScope);
}

/**
 * Subjects the platform and NATS itself use: the gateway's connection may read and write all of
 * them, so a trigger listening there would see (and be invoked by) internal traffic — leases,
 * invocations, replies — and one publishing there could forge it.
 */
function reservedSubjects(prefix: string): string[] {
  return [prefix, `${prefix}.>`];
}

/**
 * First tokens NATS and the platform keep for themselves: request replies (`_INBOX`, and each
 * service's own `_INBOX_<service>`, which must stay private to it) and system APIs (`$JS`, `$SYS`,
 * `$KV`...).
 */
function isSystemRoot(subject: string): boolean {
  const first = subject.split(".")[0] ?? "";
  return first.startsWith("_INBOX") || first.startsWith("$");
}

/** Streams the platform owns, and the backing streams of key-value and object stores. */
const RESERVED_STREAM = /^(FIZZ_|KV_|OBJ_)/;

function checkMessageQueue(spec: MessageQueueTriggerSpec, prefix: string): void {
  const reserved = reservedSubjects(prefix);
  if (isSystemRoot(spec.subject) || reserved.some((r) => subjectsIntersect(spec.subject, r))) {
    throw new FizzError(
      "VALIDATION_FAILED",
      `spec.subject: "${spec.subject}" overlaps the platform's internal subjects (${prefix}.>, _INBOX.>, $-subjects); ` +
        "a trigger must never listen to internal traffic, so pick a subject outside them",
      { field: "spec.subject" },
    );
  }
  const published = [
    ["spec.responseSubject", spec.responseSubject],
    ["spec.errorSubject", spec.errorSubject],
  ] as const;
  for (const [field, subject] of published) {
    if (subject === undefined) continue;
    if (isSystemRoot(subject) || reserved.some((r) => subjectsIntersect(subject, r))) {
      throw new FizzError(
        "VALIDATION_FAILED",
        `${field}: "${subject}" is an internal subject (${prefix}.>, _INBOX.>, $-subjects); a trigger must not publish into platform traffic`,
        { field },
      );
    }
    // Each answer would arrive as a new message on the trigger's own subject: an endless loop.
    if (subjectsIntersect(spec.subject, subject)) {
      throw new FizzError(
        "VALIDATION_FAILED",
        `${field}: "${subject}" is matched by the trigger's own subject "${spec.subject}", so every answer would invoke the function again`,
        { field },
      );
    }
  }
  if (spec.stream !== undefined && RESERVED_STREAM.test(spec.stream)) {
    throw new FizzError(
      "VALIDATION_FAILED",
      `spec.stream: "${spec.stream}" is reserved (the platform's ${Object.values(Streams).join(", ")}, and FIZZ_, KV_, OBJ_ names); use your own stream`,
      { field: "spec.stream" },
    );
  }
}

function checkWatchScope(spec: WatchTriggerSpec, ns: string, clusterScope: boolean): void {
  if (clusterScope || spec.namespace === ns) return;
  throw new FizzError(
    "VALIDATION_FAILED",
    `spec.namespace: a watch trigger may only watch its own namespace (${ns}); cross-namespace watches need FIZZ_WATCH_CLUSTER_SCOPE=true on the registry`,
    { field: "spec.namespace" },
  );
}

/**
 * Whether some subject matches both patterns (`*` is one token, `>` one or more, last). Used for
 * reserved subjects, self-loops and queue-group overlaps, so `orders.*` and `orders.created` count
 * as the same traffic.
 */
export function subjectsIntersect(a: string, b: string): boolean {
  const at = a.split(".");
  const bt = b.split(".");
  for (let i = 0; ; i++) {
    const x = at[i];
    const y = bt[i];
    if (x === undefined || y === undefined) return x === y;
    if (x === ">" || y === ">") return true;
    if (x !== "*" && y !== "*" && x !== y) return false;
  }
}

/**
 * Two mq triggers with the same explicit queue group on overlapping subjects would split the
 * messages between them: each message would reach only one of the two functions, at random.
 * NATS queue groups are server-wide, so every namespace is compared. Triggers without a queue
 * group each get their own (`fizz-mqt-<ns>-<name>`) and never conflict.
 */
export async function findQueueGroupConflict(
  r: StoreReader,
  candidate: MessageQueueTrigger,
): Promise<MessageQueueTrigger | undefined> {
  const group = candidate.spec.queueGroup;
  if (group === undefined) return undefined;
  const self = `${candidate.metadata.namespace}/${candidate.metadata.name}`;
  return (await r.list("mqtriggers")).find(
    (o) =>
      `${o.metadata.namespace}/${o.metadata.name}` !== self &&
      o.spec.queueGroup === group &&
      subjectsIntersect(o.spec.subject, candidate.spec.subject),
  );
}

/** Every trigger of any kind in the namespace that invokes the function, as `<kind> "<name>"`. */
export async function findFunctionUsers(r: StoreReader, ns: string, fn: string): Promise<string[]> {
  const users: string[] = [];
  for (const kind of TRIGGER_KINDS) {
    const names = (await r.list(kind, ns))
      .filter((t) => t.spec.function === fn)
      .map((t) => `"${t.metadata.name}"`);
    if (names.length > 0) users.push(`${kind} ${names.join(", ")}`);
  }
  return users;
}
