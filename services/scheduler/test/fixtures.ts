import { Environment, FunctionObject, type Instance } from "@fizz/events";

/** Registry objects built through the shared schemas, so defaults are the ones services see. */
export function envObj(
  name: string,
  opts: { namespace?: string; image?: string; concurrency?: number } = {},
): Environment {
  return Environment.parse({
    apiVersion: "fizz.dev/v1",
    kind: "Environment",
    metadata: meta(opts.namespace ?? "default", name, 1, `uid-env-${name}`),
    spec: {
      image: opts.image ?? "fizz/env-node",
      ...(opts.concurrency ? { concurrency: opts.concurrency } : {}),
    },
  });
}

export interface FnOpts {
  namespace?: string;
  env?: string;
  revision?: number;
  uid?: string;
  concurrency?: number;
  minInstances?: number;
  maxInstances?: number;
  timeoutSeconds?: number;
  idleTimeoutSeconds?: number;
  entrypoint?: string;
}

export function fnObj(name: string, o: FnOpts = {}): FunctionObject {
  const {
    namespace = "default",
    env = "node",
    revision = 1,
    uid = `uid-fn-${name}`,
    ...limits
  } = o;
  return FunctionObject.parse({
    apiVersion: "fizz.dev/v1",
    kind: "Function",
    metadata: meta(namespace, name, revision, uid),
    spec: {
      environment: env,
      code: { filename: "hello.js", digest: `sha256:${"ab".repeat(32)}`, size: 42 },
      ...limits,
    },
  });
}

function meta(namespace: string, name: string, revision: number, uid: string) {
  const ts = new Date(0).toISOString();
  return { namespace, name, uid, revision, labels: {}, createdAt: ts, updatedAt: ts };
}

let seq = 0;
/** A specialized instance as the poolkeeper would return it; the address is never dialled. */
export function instanceFor(
  fn: { namespace: string; name: string; revision: number },
  opts: { id?: string; env?: string; concurrency?: number } = {},
): Instance {
  seq++;
  return {
    id: opts.id ?? `inst-${seq}`,
    address: `http://127.0.0.1:${1 + (seq % 1000)}`,
    environment: { namespace: fn.namespace, name: opts.env ?? "node" },
    state: "specialized",
    function: { ...fn },
    ...(opts.concurrency ? { concurrency: opts.concurrency } : {}),
    backend: "process",
    startedAt: Date.now(),
    specializedAt: Date.now(),
  };
}
