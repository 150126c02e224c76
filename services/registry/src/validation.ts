import { createHash } from "node:crypto";
import {
  CONFIG_MAX_BYTES,
  CreateInput,
  FizzError,
  FunctionSpecInput,
  Kinds,
  PatchInput,
  dnsLabel,
  isKindPlural,
  checkSchedule,
  routeProblem,
  RUNTIME_NAMES,
  runtimeOfImage,
  specInputSchemas,
  specSchemas,
  SecretSpecInput,
  type CodeRef,
  type KindPlural,
  type ObjectsByPlural,
} from "@fizz/events";
import type { Backend } from "./config";
import { checkKnownKeys, errorMap, issueError } from "./issues";

/**
 * Everything that can be checked without the store: request shape, names, spec fields, code size,
 * images. Each failure is a FizzError naming the field; nothing here has side effects, so a
 * refused request has changed nothing by construction.
 */
export type SpecOf<K extends KindPlural> = ObjectsByPlural[K]["spec"];
export type AnySpec = SpecOf<KindPlural>;

export interface ValidationOptions {
  backend: Backend;
  codeMaxBytes: number;
  /**
   * FIZZ_ALLOW_ENV_COMMAND: may an environment carry a `command` the process backend runs on the
   * host? Root-equivalent for whoever can write environments, so off unless the operator says so.
   */
  allowEnvCommand?: boolean;
}

/** A decoded code upload: the blob to store under `code:<hex>` and the reference the function keeps. */
export interface CodeBlob {
  digestHex: string;
  bytes: Buffer;
  ref: CodeRef;
}

export interface CreateRequest {
  name: string;
  labels: Record<string, string>;
  spec: AnySpec;
  code?: CodeBlob;
  /** A secret's values (key -> base64), to be sealed; the spec holds only the keys. */
  secretData?: Record<string, string>;
}

export interface PatchRequest {
  labels?: Record<string, string>;
  /** The given spec fields, except a new code upload (in `code`); null means "unset". */
  spec: Record<string, unknown>;
  code?: CodeBlob;
  /** A secret's new values (they replace all of the old ones). */
  secretData?: Record<string, string>;
  revision?: number;
}

const CREATE_KEYS = ["name", "labels", "spec"];
const PATCH_KEYS = ["labels", "spec", "revision"];
/**
 * A package's `status` is the registry's: a client that sends one (e.g. a `get` edited and sent
 * back) has it ignored, not refused, so round-tripping an object works.
 */
const IGNORED_KEYS: Partial<Record<KindPlural, string[]>> = { packages: ["status"] };

function withoutIgnored(kind: KindPlural, obj: Record<string, unknown>): Record<string, unknown> {
  const ignored = IGNORED_KEYS[kind];
  if (!ignored) return obj;
  return Object.fromEntries(Object.entries(obj).filter(([k]) => !ignored.includes(k)));
}

export function checkKind(value: string): KindPlural {
  if (!isKindPlural(value)) {
    throw new FizzError(
      "NOT_FOUND",
      `unknown kind "${value}"; use ${Object.keys(Kinds).join(", ")}`,
      { field: "kind" },
    );
  }
  return value;
}

export function checkName(value: string, field: "namespace" | "name"): string {
  const r = dnsLabel.safeParse(value, { error: errorMap });
  if (!r.success) throw issueError(r.error, field, () => "INVALID_NAME");
  return r.data;
}

export function parseCreate(
  kind: KindPlural,
  body: unknown,
  opts: ValidationOptions,
): CreateRequest {
  const obj = withoutIgnored(kind, bodyObject(body));
  checkKnownKeys(obj, CREATE_KEYS);
  const top = CreateInput.safeParse(obj, { error: errorMap });
  // A missing name is an incomplete request, not a bad name.
  const nameCode = (f: string) =>
    f === "name" && obj.name !== undefined ? "INVALID_NAME" : "VALIDATION_FAILED";
  if (!top.success) throw issueError(top.error, undefined, nameCode);
  const raw = withoutNulls(top.data.spec);
  const schema = specInputSchemas[kind];
  checkKnownKeys(raw, Object.keys(schema.shape), "spec");
  // Before the schema, whose refinement can only say "must be a cron expression".
  if (kind === "timetriggers") checkCron(raw.cron);
  const parsed = schema.safeParse(raw, { error: errorMap });
  if (!parsed.success) throw issueError(parsed.error, "spec");
  let code: CodeBlob | undefined;
  let secretData: Record<string, string> | undefined;
  let candidate: Record<string, unknown> = parsed.data;
  if (kind === "functions") {
    const upload = (parsed.data as { code?: { filename: string; content: string } }).code;
    if (upload) {
      code = decodeCode(upload, opts.codeMaxBytes);
      candidate = { ...parsed.data, code: code.ref };
    }
  } else if (kind === "secrets") {
    secretData = checkSecretData((parsed.data as { data: Record<string, string> }).data);
    candidate = { keys: Object.keys(secretData).sort() };
  }
  const spec = finishSpec(kind, candidate, opts);
  return {
    name: top.data.name,
    labels: top.data.labels,
    spec,
    ...(code ? { code } : {}),
    ...(secretData ? { secretData } : {}),
  };
}

export function parsePatch(kind: KindPlural, body: unknown, opts: ValidationOptions): PatchRequest {
  const obj = withoutIgnored(kind, bodyObject(body));
  checkKnownKeys(obj, PATCH_KEYS);
  const top = PatchInput.safeParse(obj, { error: errorMap });
  if (!top.success) throw issueError(top.error);
  const out: PatchRequest = { spec: {} };
  if (top.data.labels !== undefined) {
    // PatchInput takes any string record; labels must obey the same rules as on create.
    const labels = CreateInput.shape.labels.safeParse(top.data.labels, { error: errorMap });
    if (!labels.success) throw issueError(labels.error, "labels");
    out.labels = labels.data;
  }
  if (top.data.revision !== undefined) out.revision = top.data.revision;
  checkKnownKeys(top.data.spec, Object.keys(specInputSchemas[kind].shape), "spec");
  for (const [k, v] of Object.entries(top.data.spec)) {
    if (kind === "functions" && k === "code" && v !== null && v !== undefined) {
      const upload = FunctionSpecInput.shape.code.safeParse(v, { error: errorMap });
      if (!upload.success) throw issueError(upload.error, "spec.code");
      out.code = decodeCode(upload.data!, opts.codeMaxBytes);
    } else if (kind === "functions" && k === "package" && v !== null && v !== undefined) {
      // Only {name}: `deployment` is the registry's to fill in, never a client's.
      const ref = FunctionSpecInput.shape.package.safeParse(v, { error: errorMap });
      if (!ref.success) throw issueError(ref.error, "spec.package");
      out.spec.package = ref.data;
    } else if (kind === "secrets" && k === "data") {
      const data = SecretSpecInput.shape.data.safeParse(v, { error: errorMap });
      if (!data.success) throw issueError(data.error, "spec.data");
      out.secretData = checkSecretData(data.data);
    } else {
      out.spec[k] = v;
    }
  }
  return out;
}

/**
 * The stored spec with the patch applied (given fields replace, null unsets so the default comes
 * back), validated as a whole: a patch may be fine alone and wrong combined (prefix added while the
 * path is still set).
 */
export function mergeSpec<K extends KindPlural>(
  kind: K,
  current: SpecOf<K>,
  patch: PatchRequest,
  opts: ValidationOptions,
): SpecOf<K> {
  const merged: Record<string, unknown> = { ...current };
  for (const [k, v] of Object.entries(patch.spec)) {
    if (v === null || v === undefined) delete merged[k];
    else merged[k] = v;
  }
  if (patch.code) merged.code = patch.code.ref;
  if (kind === "functions") switchCodeSource(current as SpecOf<"functions">, merged, patch);
  if (kind === "secrets" && patch.secretData) merged.keys = Object.keys(patch.secretData).sort();
  return finishSpec(kind, merged, opts);
}

/**
 * A function runs one code source: a patch that gives new code drops the package and one that
 * names a package drops the code (giving both is still refused). The same package name keeps the
 * deployment the function runs; a new name gets resolved by the registry inside the write.
 */
function switchCodeSource(
  current: SpecOf<"functions">,
  merged: Record<string, unknown>,
  patch: PatchRequest,
): void {
  const givesCode = patch.code !== undefined;
  const pkg = patch.spec.package as { name: string } | null | undefined;
  if (givesCode && pkg === undefined) delete merged.package;
  if (pkg !== null && pkg !== undefined) {
    if (!givesCode && patch.spec.code === undefined) delete merged.code;
    merged.package = pkg.name === current.package?.name ? current.package : { name: pkg.name };
  }
}

/** Decoded size of every value together within CONFIG_MAX_BYTES; values padded base64. */
export function checkSecretData(data: Record<string, string>): Record<string, string> {
  let total = 0;
  for (const [key, value] of Object.entries(data)) {
    const field = `spec.data.${key}`;
    if (value.length % 4 !== 0)
      throw new FizzError(
        "VALIDATION_FAILED",
        `${field}: must be padded base64 (length a multiple of 4)`,
        { field },
      );
    total += Buffer.byteLength(value, "base64");
  }
  if (total > CONFIG_MAX_BYTES)
    throw new FizzError(
      "PAYLOAD_TOO_LARGE",
      `spec.data: values are ${total} bytes together, over the limit of ${CONFIG_MAX_BYTES}`,
      { field: "spec.data" },
    );
  return data;
}

function checkConfigMapSize(spec: SpecOf<"configmaps">): void {
  let total = 0;
  for (const value of Object.values(spec.data)) total += Buffer.byteLength(value, "utf8");
  if (total > CONFIG_MAX_BYTES)
    throw new FizzError(
      "PAYLOAD_TOO_LARGE",
      `spec.data: values are ${total} bytes together, over the limit of ${CONFIG_MAX_BYTES}`,
      { field: "spec.data" },
    );
}

/**
 * Validates the stored form of a spec and the checks that need the whole spec. Create and patch
 * both end here, so a patch can never reach a state a create would refuse.
 */
function finishSpec(
  kind: KindPlural,
  candidate: Record<string, unknown>,
  opts: ValidationOptions,
): AnySpec {
  if (kind === "timetriggers") checkCron(candidate.cron);
  const parsed = specSchemas[kind].safeParse(candidate, { error: errorMap });
  if (!parsed.success) throw issueError(parsed.error, "spec");
  const spec = parsed.data;
  if (kind === "environments") {
    checkEnvCommand(spec as SpecOf<"environments">, opts);
    checkImage(spec as SpecOf<"environments">, opts);
  } else if (kind === "functions") {
    checkInstanceRange(spec as SpecOf<"functions">);
  } else if (kind === "configmaps") {
    checkConfigMapSize(spec as SpecOf<"configmaps">);
  } else if (kind === "httptriggers") {
    // exactOptionalPropertyTypes: pass only the route fields that are set.
    const { path, prefix } = spec as SpecOf<"httptriggers">;
    const problem = routeProblem({
      ...(path !== undefined ? { path } : {}),
      ...(prefix !== undefined ? { prefix } : {}),
    });
    if (problem)
      throw new FizzError("VALIDATION_FAILED", problem.message, { field: problem.field });
  }
  return spec;
}

/**
 * The schedule as the scheduler will run it (`checkSchedule`, the same function it applies): the
 * parser's own reason (`Invalid value for minute: 61`) where the schema could only say "must be a
 * cron expression", an `@every` within 1 s..366 days, and a first tick within five years —
 * `0 0 30 2 *` never fires, and a timer that never runs is a mistake, not a choice.
 */
export function checkCron(cron: unknown, now: Date = new Date()): void {
  // Missing, empty or oversized: the schema words those.
  if (typeof cron !== "string" || cron.trim() === "" || cron.length > 128) return;
  const field = "spec.cron";
  try {
    checkSchedule(cron, now);
  } catch (err) {
    throw new FizzError("VALIDATION_FAILED", `${field}: ${(err as Error).message}`, { field });
  }
}

/**
 * On the process backend a command runs on the host as the poolkeeper's user: whoever may write
 * environments could run anything there. On Kubernetes it only replaces the container's command.
 */
export function checkEnvCommand(spec: SpecOf<"environments">, opts: ValidationOptions): void {
  if (spec.command === undefined || opts.backend !== "process" || opts.allowEnvCommand === true)
    return;
  throw new FizzError(
    "ENV_COMMAND_DISABLED",
    "spec.command: host commands are disabled on this platform (the process backend would run them on the host); " +
      "use a fizz/env-<runtime> image (node, python, go, php, ruby, dotnet), or have the operator set FIZZ_ALLOW_ENV_COMMAND=true (root-equivalent)",
    { field: "spec.command" },
  );
}

/** A function whose floor is above its ceiling could never satisfy both: the scheduler would flap. */
export function checkInstanceRange(spec: SpecOf<"functions">): void {
  if (spec.minInstances <= spec.maxInstances) return;
  throw new FizzError(
    "VALIDATION_FAILED",
    `spec.minInstances: ${spec.minInstances} is above spec.maxInstances (${spec.maxInstances})`,
    { field: "spec.minInstances" },
  );
}

export function checkImage(spec: SpecOf<"environments">, opts: ValidationOptions): void {
  if (
    opts.backend !== "process" ||
    spec.command !== undefined ||
    runtimeOfImage(spec.image) !== undefined
  )
    return;
  const command = opts.allowEnvCommand === true ? ", or give --command" : "";
  throw new FizzError(
    "UNKNOWN_IMAGE",
    `image "${spec.image}" names no local runtime; use one of ${RUNTIME_NAMES.map((r) => `fizz/env-${r}`).join(", ")}${command}`,
    { field: "spec.image" },
  );
}

/** Base64 → bytes, size-checked before decoding so an oversized upload is never copied again. */
export function decodeCode(
  upload: { filename: string; content: string },
  maxBytes: number,
): CodeBlob {
  const content = upload.content;
  const field = "spec.code.content";
  if (content.length % 4 !== 0) {
    throw new FizzError(
      "VALIDATION_FAILED",
      `${field}: must be padded base64 (length a multiple of 4)`,
      { field },
    );
  }
  const padding = content.endsWith("==") ? 2 : content.endsWith("=") ? 1 : 0;
  const size = (content.length / 4) * 3 - padding;
  if (size === 0) throw new FizzError("VALIDATION_FAILED", `${field}: is empty`, { field });
  if (size > maxBytes) {
    throw new FizzError(
      "CODE_TOO_LARGE",
      `${field}: code is ${size} bytes, over the limit of ${maxBytes} bytes`,
      { field },
    );
  }
  const bytes = Buffer.from(content, "base64");
  const digestHex = createHash("sha256").update(bytes).digest("hex");
  return {
    digestHex,
    bytes,
    ref: { filename: upload.filename, digest: `sha256:${digestHex}`, size: bytes.length },
  };
}

function bodyObject(body: unknown): Record<string, unknown> {
  if (typeof body !== "object" || body === null || Array.isArray(body)) {
    throw new FizzError(
      "INVALID_BODY",
      "body must be a JSON object (content-type: application/json)",
    );
  }
  return body as Record<string, unknown>;
}

/** On create, null means "not given", the same as in a patch. */
function withoutNulls(spec: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(Object.entries(spec).filter(([, v]) => v !== null));
}
