import type { FunctionObject, HttpTrigger } from "@fizz/events";

/**
 * What the route table keeps of a registry object. Not the object itself: a decoded Function or
 * HttpTrigger is a tree of seven to nine objects with strings the gateway never reads again
 * (apiVersion, labels, updatedAt, the code digest, environment, ...), about 1.3 KB per function
 * with its route; at 10,000 functions that was half of what the table held on the heap. Every
 * field here is read: the merge rules (uid, revision, createdAt), the route, the lease state's
 * settings and the bus share (maxInstances).
 */
interface Held {
  readonly uid: string;
  readonly revision: number;
  /** ISO time as the registry wrote it; compared as text, as the objects' own field was. */
  readonly createdAt: string;
}

export interface FunctionRecord extends Held {
  readonly namespace: string;
  readonly name: string;
  readonly maxInstances: number;
  readonly timeoutSeconds: number;
}

export interface TriggerRecord extends Held {
  /** The function it invokes, in the trigger's namespace. */
  readonly function: string;
  readonly path: string | undefined;
  readonly prefix: string | undefined;
  readonly host: string | undefined;
  readonly methods: readonly string[];
}

/** Most triggers take any method: they share this one empty list instead of an array each. */
const ANY_METHOD: readonly string[] = Object.freeze([]);

export function recordOfFunction(f: FunctionObject): FunctionRecord {
  const { metadata: m, spec } = f;
  return {
    uid: m.uid,
    revision: m.revision,
    createdAt: m.createdAt,
    namespace: m.namespace,
    name: m.name,
    maxInstances: spec.maxInstances,
    timeoutSeconds: spec.timeoutSeconds,
  };
}

export function recordOfTrigger(t: HttpTrigger): TriggerRecord {
  const { metadata: m, spec } = t;
  return {
    uid: m.uid,
    revision: m.revision,
    createdAt: m.createdAt,
    function: spec.function,
    path: spec.path,
    prefix: spec.prefix,
    host: spec.host,
    methods: spec.methods.length === 0 ? ANY_METHOD : spec.methods,
  };
}
