import { randomUUID } from "node:crypto";
import {
  API_VERSION,
  FizzError,
  Kinds,
  type AnyObject,
  type KindPlural,
  type ObjectsByPlural,
  type SkippedObject,
} from "@fizz/events";
import { describeRoute, findRouteConflict } from "./route-conflict";
import type { Store, StoreReader } from "./store";
import {
  checkTriggerScope,
  findFunctionUsers,
  findQueueGroupConflict,
  isTrigger,
  type TriggerRuleOptions,
} from "./trigger-rules";
import {
  checkKind,
  checkName,
  mergeSpec,
  parseCreate,
  parsePatch,
  type ValidationOptions,
} from "./validation";

/**
 * The registry's operations, shared by the REST API and the NATS handlers. Each write validates
 * what it can up front, then decides inside one store transaction against what is stored
 * (existence, references, route conflicts, in-use), and reports the change only after it committed.
 */
export type ChangeOp = "created" | "updated" | "deleted";
export interface Change {
  kind: KindPlural;
  op: ChangeOp;
  object: AnyObject;
}

export interface OperationsOptions extends ValidationOptions, TriggerRuleOptions {
  store: Store;
  /** Called after each committed write; must not throw (the write already happened). */
  onChange: (change: Change) => Promise<void>;
  now?: () => Date;
}

export interface CodeDownload {
  filename: string;
  digest: string;
  bytes: Buffer;
}

export class Operations {
  private readonly store: Store;
  private readonly now: () => Date;

  constructor(private readonly opts: OperationsOptions) {
    this.store = opts.store;
    this.now = opts.now ?? (() => new Date());
  }

  async list(kindParam: string, namespace?: string): Promise<AnyObject[]> {
    return (await this.listing(kindParam, namespace)).items;
  }

  /** `list`, naming the stored objects it left out because they do not match their schema. */
  async listing(
    kindParam: string,
    namespace?: string,
  ): Promise<{ items: AnyObject[]; skipped: SkippedObject[] }> {
    const kind = checkKind(kindParam);
    return this.store.listing(
      kind,
      namespace === undefined ? undefined : checkName(namespace, "namespace"),
    );
  }

  async get(kindParam: string, namespace: string, name: string): Promise<AnyObject> {
    const kind = checkKind(kindParam);
    const ns = checkName(namespace, "namespace");
    checkName(name, "name");
    return (await this.store.get(kind, ns, name)) ?? notFound(kind, ns, name);
  }

  async code(namespace: string, name: string): Promise<CodeDownload> {
    const fn = (await this.get("functions", namespace, name)) as ObjectsByPlural["functions"];
    const hex = fn.spec.code.digest.replace(/^sha256:/, "");
    const bytes = await this.store.getCode(hex);
    if (!bytes)
      throw new FizzError(
        "INTERNAL",
        `code blob ${fn.spec.code.digest} of function "${namespace}/${name}" is missing`,
      );
    return { filename: fn.spec.code.filename, digest: fn.spec.code.digest, bytes };
  }

  async create(kindParam: string, namespace: string, body: unknown): Promise<AnyObject> {
    const kind = checkKind(kindParam);
    const ns = checkName(namespace, "namespace");
    const input = parseCreate(kind, body, this.opts);
    const at = this.now().toISOString();
    const obj = {
      apiVersion: API_VERSION,
      kind: Kinds[kind],
      metadata: {
        namespace: ns,
        name: input.name,
        uid: randomUUID(),
        revision: 1,
        labels: input.labels,
        createdAt: at,
        updatedAt: at,
      },
      spec: input.spec,
    } as AnyObject;
    const created = await this.store.transact(async (r) => {
      if (await r.get(kind, ns, input.name)) {
        throw new FizzError(
          "ALREADY_EXISTS",
          `${singular(kind)} "${input.name}" already exists in namespace "${ns}"`,
          {
            field: "name",
          },
        );
      }
      await checkReferences(r, obj, this.opts);
      return { writes: { put: [obj], code: input.code ? [input.code] : [] }, result: obj };
    });
    await this.opts.onChange({ kind, op: "created", object: created });
    return created;
  }

  async patch(
    kindParam: string,
    namespace: string,
    name: string,
    body: unknown,
  ): Promise<AnyObject> {
    const kind = checkKind(kindParam);
    const ns = checkName(namespace, "namespace");
    checkName(name, "name");
    const patch = parsePatch(kind, body, this.opts);
    const updated = await this.store.transact(async (r) => {
      const current = (await r.get(kind, ns, name)) ?? notFound(kind, ns, name);
      const rev = current.metadata.revision;
      if (patch.revision !== undefined && patch.revision !== rev) {
        throw new FizzError(
          "REVISION_CONFLICT",
          `revision ${patch.revision} is stale: ${singular(kind)} "${ns}/${name}" is at revision ${rev}`,
          { field: "revision" },
        );
      }
      const spec = mergeSpec(kind, current.spec, patch, this.opts);
      const next = {
        ...current,
        metadata: {
          ...current.metadata,
          revision: rev + 1,
          labels: patch.labels ?? current.metadata.labels,
          updatedAt: this.now().toISOString(),
        },
        spec,
      } as AnyObject;
      await checkReferences(r, next, this.opts);
      return { writes: { put: [next], code: patch.code ? [patch.code] : [] }, result: next };
    });
    await this.opts.onChange({ kind, op: "updated", object: updated });
    return updated;
  }

  async delete(kindParam: string, namespace: string, name: string): Promise<AnyObject> {
    const kind = checkKind(kindParam);
    const ns = checkName(namespace, "namespace");
    checkName(name, "name");
    const deleted = await this.store.transact(async (r) => {
      const current = (await r.get(kind, ns, name)) ?? notFound(kind, ns, name);
      await checkNotInUse(r, kind, ns, name);
      // Code blobs stay: another function (or revision being specialized) may share the digest.
      return { writes: { remove: [{ kind, namespace: ns, name }] }, result: current };
    });
    await this.opts.onChange({ kind, op: "deleted", object: deleted });
    return deleted;
  }
}

/** What an object refers to must exist, and a route or queue group must be free, at commit time. */
async function checkReferences(
  r: StoreReader,
  obj: AnyObject,
  rules: TriggerRuleOptions,
): Promise<void> {
  const ns = obj.metadata.namespace;
  if (isTrigger(obj)) {
    checkTriggerScope(obj, rules);
    if (!(await r.get("functions", ns, obj.spec.function))) {
      throw new FizzError(
        "UNKNOWN_FUNCTION",
        `spec.function: function "${obj.spec.function}" does not exist in namespace "${ns}"`,
        { field: "spec.function" },
      );
    }
  }
  if (obj.kind === "Function") {
    if (!(await r.get("environments", ns, obj.spec.environment))) {
      throw new FizzError(
        "UNKNOWN_ENVIRONMENT",
        `spec.environment: environment "${obj.spec.environment}" does not exist in namespace "${ns}"`,
        {
          field: "spec.environment",
        },
      );
    }
  } else if (obj.kind === "HttpTrigger") {
    // Every namespace: the gateway serves one host/path space.
    const other = findRouteConflict(obj, await r.list("httptriggers"));
    if (other) {
      const field = obj.spec.path !== undefined ? "spec.path" : "spec.prefix";
      throw new FizzError(
        "ROUTE_CONFLICT",
        `${field}: route ${describeRoute(obj.spec)} conflicts with httptrigger "${other.metadata.name}" in namespace "${other.metadata.namespace}" (${describeRoute(other.spec)})`,
        { field },
      );
    }
  } else if (obj.kind === "MessageQueueTrigger") {
    const other = await findQueueGroupConflict(r, obj);
    if (other) {
      throw new FizzError(
        "ROUTE_CONFLICT",
        `spec.queueGroup: queue group "${obj.spec.queueGroup}" on "${obj.spec.subject}" is already used by mqtrigger "${other.metadata.name}" in namespace "${other.metadata.namespace}" on "${other.spec.subject}"; both would share (split) the messages — use another queue group, or none`,
        { field: "spec.queueGroup" },
      );
    }
  }
}

async function checkNotInUse(
  r: StoreReader,
  kind: KindPlural,
  ns: string,
  name: string,
): Promise<void> {
  let users: string[] = [];
  let userKind = "";
  if (kind === "environments") {
    users = (await r.list("functions", ns))
      .filter((f) => f.spec.environment === name)
      .map((f) => f.metadata.name);
    userKind = "functions";
  } else if (kind === "functions") {
    // Already `<kind> "<name>", ...` per trigger kind: every kind names a function.
    users = await findFunctionUsers(r, ns, name);
  }
  if (users.length > 0) {
    const named = userKind
      ? `${userKind} ${users.map((u) => `"${u}"`).join(", ")}`
      : users.join(" and ");
    throw new FizzError(
      "IN_USE",
      `${singular(kind)} "${ns}/${name}" is used by ${named}; delete or change them first`,
      { field: "name" },
    );
  }
}

function notFound(kind: KindPlural, ns: string, name: string): never {
  throw new FizzError("NOT_FOUND", `${singular(kind)} "${name}" not found in namespace "${ns}"`, {
    field: "name",
  });
}

function singular(kind: KindPlural): string {
  return kind === "httptriggers" ? "httptrigger" : kind.slice(0, -1);
}
