import { randomUUID } from "node:crypto";
import { Readable } from "node:stream";
import {
  API_VERSION,
  FizzError,
  Kinds,
  type AnyObject,
  type BuildReport,
  type BuildReportReply,
  type ConfigReadReply,
  type ConfigReadRequest,
  type KindPlural,
  type ObjectsByPlural,
  type PackageObject,
  type SkippedObject,
} from "@fizz/events";
import type { Logger } from "@fizz/kit";
import type { ArchiveStore } from "@fizz/kit/archive-store";
import type { BuildQueue } from "./builds";
import { readConfig } from "./config-read";
import type { Change, Decide } from "./changes";
import { PackageLifecycle, checkArchivesStored, nextPackageStatus } from "./packages";
import { checkNotInUse, checkReferences, notFound, resolvePackage, singular } from "./references";
import { noSecretKey, type SecretBox } from "./secret-box";
import type { Store, Writes } from "./store";
import type { TriggerRuleOptions } from "./trigger-rules";
import {
  checkKind,
  checkName,
  mergeSpec,
  parseCreate,
  parsePatch,
  type CodeBlob,
  type ValidationOptions,
} from "./validation";

/**
 * The registry's operations, shared by the REST API and the NATS handlers. Each write validates
 * what it can up front, then decides inside one store transaction against what is stored
 * (existence, references, route conflicts, in-use), and reports the change only after it committed.
 * Blobs (code, archives) go to the Object Store before the transaction: they are content-addressed,
 * so one left behind by a write that then failed is harmless, and a committed object never names
 * a blob that is not there.
 */
export type { Change, ChangeOp, Decide } from "./changes";

export interface OperationsOptions extends ValidationOptions, TriggerRuleOptions {
  store: Store;
  archives: ArchiveStore;
  /** Undefined when FIZZ_SECRETS_KEY_FILE is not set: secret writes are refused. */
  secrets?: SecretBox | undefined;
  builds: BuildQueue;
  /** Called after each committed write; must not throw (the write already happened). */
  onChange: (change: Change) => Promise<void>;
  logger?: Logger;
  now?: () => Date;
}

export interface CodeDownload {
  filename: string;
  digest: string;
  bytes: Buffer;
}

export class Operations {
  readonly store: Store;
  readonly now: () => Date;
  readonly packages: PackageLifecycle;

  constructor(readonly opts: OperationsOptions) {
    this.store = opts.store;
    this.now = opts.now ?? (() => new Date());
    this.packages = new PackageLifecycle(this);
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
    const code = fn.spec.code;
    if (!code)
      throw new FizzError(
        "NOT_FOUND",
        `function "${namespace}/${name}" has no single-file code: it runs package "${fn.spec.package?.name ?? ""}" (GET .../packages/<name>/source or /deployment)`,
        { field: "name" },
      );
    const bytes =
      (await this.opts.archives.getBuffer(
        code.digest,
        Math.max(code.size, this.opts.codeMaxBytes),
      )) ??
      // A Redis-era blob the start-up migration has not copied yet.
      (await this.store.getCode(code.digest.replace(/^sha256:/, "")));
    if (!bytes)
      throw new FizzError(
        "INTERNAL",
        `code blob ${code.digest} of function "${namespace}/${name}" is missing`,
      );
    return { filename: code.filename, digest: code.digest, bytes };
  }

  async create(kindParam: string, namespace: string, body: unknown): Promise<AnyObject> {
    const kind = checkKind(kindParam);
    const ns = checkName(namespace, "namespace");
    const input = parseCreate(kind, body, this.opts);
    const at = this.now().toISOString();
    let obj = {
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
    if (obj.kind === "Package") {
      await checkArchivesStored(this.opts.archives, obj.spec);
      obj = { ...obj, status: nextPackageStatus(undefined, obj.spec, obj.metadata.revision) };
    }
    const secretData = this.sealed(ns, input.name, input.secretData);
    if (input.code) await this.putCode(input.code);
    const created = await this.store.transact(async (r) => {
      if (await r.get(kind, ns, input.name)) {
        throw new FizzError(
          "ALREADY_EXISTS",
          `${singular(kind)} "${input.name}" already exists in namespace "${ns}"`,
          { field: "name" },
        );
      }
      await checkReferences(r, obj, this.opts);
      const next = obj.kind === "Function" ? await resolvePackage(r, obj) : obj;
      return { writes: { put: [next], ...secretData }, result: next };
    });
    await this.opts.onChange({ kind, op: "created", object: created });
    if (created.kind === "Package") return this.packages.afterWrite(undefined, created);
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
    const secretData = this.sealed(ns, name, patch.secretData);
    if (patch.code) await this.putCode(patch.code);
    let before: AnyObject | undefined;
    const updated = await this.store.transact(async (r) => {
      const current = (await r.get(kind, ns, name)) ?? notFound(kind, ns, name);
      before = current;
      const rev = current.metadata.revision;
      if (patch.revision !== undefined && patch.revision !== rev) {
        throw new FizzError(
          "REVISION_CONFLICT",
          `revision ${patch.revision} is stale: ${singular(kind)} "${ns}/${name}" is at revision ${rev}`,
          { field: "revision" },
        );
      }
      const spec = mergeSpec(kind, current.spec, patch, this.opts);
      let next = this.bumped(current, { labels: patch.labels ?? current.metadata.labels, spec });
      await checkReferences(r, next, this.opts);
      if (next.kind === "Function") next = await resolvePackage(r, next);
      if (next.kind === "Package" && current.kind === "Package")
        next = await this.packages.decidePatch(r, current, next);
      return { writes: { put: [next], ...secretData }, result: next };
    });
    await this.opts.onChange({ kind, op: "updated", object: updated });
    if (updated.kind === "Package" && before?.kind === "Package")
      return this.packages.afterWrite(before, updated);
    return updated;
  }

  async delete(kindParam: string, namespace: string, name: string): Promise<AnyObject> {
    const kind = checkKind(kindParam);
    const ns = checkName(namespace, "namespace");
    checkName(name, "name");
    const deleted = await this.store.transact(async (r) => {
      const current = (await r.get(kind, ns, name)) ?? notFound(kind, ns, name);
      await checkNotInUse(r, kind, ns, name);
      // Blobs stay: another function or package (or an instance being specialized) may share
      // the digest. A secret's sealed values go with it (store.ts).
      return { writes: { remove: [{ kind, namespace: ns, name }] }, result: current };
    });
    await this.opts.onChange({ kind, op: "deleted", object: deleted });
    return deleted;
  }

  /** POST .../packages/{name}/rebuild: the source built again, whatever the last result. */
  async rebuild(namespace: string, name: string): Promise<PackageObject> {
    const ns = checkName(namespace, "namespace");
    checkName(name, "name");
    return this.packages.rebuild(ns, name);
  }

  /** `registry.build.report` from a builder. */
  buildReport(report: BuildReport): Promise<BuildReportReply> {
    return this.packages.report(report);
  }

  /** `registry.config.read` from the poolkeeper: secret values decrypted, configmaps, base64. */
  readConfig(req: ConfigReadRequest): Promise<ConfigReadReply> {
    return readConfig(this.store, this.opts.secrets, req);
  }

  /**
   * The one update path besides PATCH (roll-outs, package status): the object as `decide` makes
   * it, at the next revision, committed, its change event out and barrier passed unless `quiet`
   * (the caller then emits). Undefined when the object is gone or `decide` wrote nothing.
   */
  async commitUpdate<K extends KindPlural>(
    kind: K,
    ns: string,
    name: string,
    decide: Decide,
    opts: { quiet?: boolean } = {},
  ): Promise<ObjectsByPlural[K] | undefined> {
    const updated = await this.store.transact(async (r) => {
      const current = await r.get(kind, ns, name);
      if (!current) return { writes: {}, result: undefined };
      const decided = await decide(current, r);
      if (!decided) return { writes: {}, result: undefined };
      const next = this.bumped(current, { spec: decided.spec, ...statusOf(decided) });
      return { writes: { put: [next] }, result: next };
    });
    if (updated && !opts.quiet) await this.opts.onChange({ kind, op: "updated", object: updated });
    return updated as ObjectsByPlural[K] | undefined;
  }

  emit(change: Change): Promise<void> {
    return this.opts.onChange(change);
  }

  private bumped(
    current: AnyObject,
    fields: { spec: unknown; labels?: Record<string, string>; status?: unknown },
  ): AnyObject {
    return {
      ...current,
      spec: fields.spec,
      ...(fields.status !== undefined ? { status: fields.status } : {}),
      metadata: {
        ...current.metadata,
        revision: current.metadata.revision + 1,
        labels: fields.labels ?? current.metadata.labels,
        updatedAt: this.now().toISOString(),
      },
    } as AnyObject;
  }

  private sealed(
    ns: string,
    name: string,
    data: Record<string, string> | undefined,
  ): Pick<Writes, "secretData"> {
    if (data === undefined) return {};
    if (!this.opts.secrets) throw noSecretKey();
    return {
      secretData: [{ namespace: ns, name, sealed: this.opts.secrets.seal(ns, name, data) }],
    };
  }

  /**
   * Code is content-addressed: bytes already stored (another function's, an earlier revision's)
   * are not sent again. An upload of a stored digest would publish its chunks to JetStream, find
   * the object there and purge them again — a stream write and a purge per create for nothing.
   */
  private async putCode(code: CodeBlob): Promise<void> {
    if (await this.opts.archives.has(code.ref.digest)) return;
    await this.opts.archives.putStream(Readable.from([code.bytes]), code.ref.digest);
  }
}

function statusOf(obj: AnyObject): { status?: unknown } {
  return obj.kind === "Package" ? { status: obj.status } : {};
}
