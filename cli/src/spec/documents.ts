/**
 * One spec document checked against the registry's own input schemas (@fizz/events), so what
 * `fizz spec validate` accepts is what the registry accepts. The document's `path` forms (a
 * function's code, a package's source or deployment) stand in for what the CLI uploads; they
 * are checked here as placeholders and turned into the real thing by files.ts.
 */
import { basename } from "node:path";
import {
  API_VERSION,
  CONFIG_MAX_BYTES,
  CreateInput,
  checkSchedule,
  dnsLabel,
  Kinds,
  routeProblem,
  specInputSchemas,
  type KindPlural,
} from "@fizz/events";
import type { ArchivePath, CodeFile } from "./files.js";
import type { SpecProblem } from "./problems.js";
import { valueAt, wordIssues, type SchemaIssue } from "./wording.js";
import type { FieldPath, RawDocument } from "./yaml-docs.js";

/** Every kind a spec may hold except secrets, whose values do not belong in files. */
export type SpecPlural = Exclude<KindPlural, "secrets">;

export const SPEC_LABEL = "fizz.dev/spec";
export const DEPLOYMENT_CONFIG = "DeploymentConfig";

export const PLURAL_OF: Readonly<Record<string, SpecPlural>> = Object.fromEntries(
  Object.entries(Kinds)
    .filter(([plural]) => plural !== "secrets")
    .map(([plural, kind]) => [kind, plural as SpecPlural]),
);

/** An object of the spec, ready to be compared with the registry's. */
export interface SpecObject {
  plural: SpecPlural;
  kind: string;
  namespace: string;
  name: string;
  /** The document's own labels (apply adds SPEC_LABEL). */
  labels: Record<string, string>;
  /** The spec as the input schema parsed it (defaults applied), path forms as placeholders. */
  spec: Record<string, unknown>;
  doc: RawDocument;
  /** Line of `metadata.name`, for messages about the object as a whole. */
  line: number;
  /** A function's `spec.code.path`, as written. */
  codePath?: string;
  /** A package's `spec.source.path` or `spec.deployment.path`, as written. */
  archivePath?: { use: "source" | "deployment"; path: string };
  /** Filled in by load.ts once the file has been read. */
  codeFile?: CodeFile;
  archive?: ArchivePath;
}

export interface DeploymentConfigDoc {
  name: string;
  doc: RawDocument;
  line: number;
}

/** The files a document names, checked even when the rest of it is not, so one run finds all. */
export interface FileRefs {
  doc: RawDocument;
  kind: string;
  name?: string;
  codePath?: string;
  archivePath?: { use: "source" | "deployment"; path: string };
}

export interface Checked {
  problems: SpecProblem[];
  object?: SpecObject;
  config?: DeploymentConfigDoc;
  files?: FileRefs;
}

const TOP_KEYS = ["apiVersion", "kind", "metadata", "spec"];
const METADATA_KEYS = ["name", "namespace", "labels"];
/** Stands in for an uploaded archive while the rest of a package spec is checked. */
const PLACEHOLDER_ARCHIVE = { digest: `sha256:${"0".repeat(64)}`, size: 0 };

export function checkDocument(doc: RawDocument, defaultNamespace: string): Checked {
  const problems: SpecProblem[] = [];
  const value = doc.value;
  let kind: string | undefined;
  let name: string | undefined;
  const add = (path: FieldPath, message: string, line = doc.lineOf(path)) => {
    problems.push({
      file: doc.file,
      line,
      ...(kind !== undefined ? { kind } : {}),
      ...(name !== undefined ? { name } : {}),
      ...(path.length > 0 ? { field: path.join(".") } : {}),
      message,
    });
  };
  if (!isRecord(value)) {
    add([], "a document must be a mapping with apiVersion, kind, metadata and spec");
    return { problems };
  }
  const metadata = value.metadata;
  if (typeof value.kind === "string") kind = value.kind;
  if (isRecord(metadata) && typeof metadata.name === "string") name = metadata.name;
  // Substitution problems first: they are often why a later check fails.
  for (const p of doc.problems) add(p.path, p.message, p.line);

  for (const key of Object.keys(value))
    if (!TOP_KEYS.includes(key)) add([key], `unknown field (known: ${TOP_KEYS.join(", ")})`);
  if (value.apiVersion !== API_VERSION)
    add(
      ["apiVersion"],
      value.apiVersion === undefined ? `is required (${API_VERSION})` : `must be ${API_VERSION}`,
    );
  const plural = checkKind(value.kind, add);
  if (!isRecord(metadata)) {
    add(["metadata"], metadata === undefined ? "is required" : "must be a mapping");
    return { problems };
  }
  for (const key of Object.keys(metadata))
    if (!METADATA_KEYS.includes(key))
      add(["metadata", key], `unknown field (known: ${METADATA_KEYS.join(", ")})`);
  const nameOk = checkField(dnsLabel, metadata.name, ["metadata", "name"], add);
  if (kind === DEPLOYMENT_CONFIG) {
    for (const key of ["namespace", "labels"])
      if (metadata[key] !== undefined) add(["metadata", key], "a DeploymentConfig has only a name");
    if (value.spec !== undefined && value.spec !== null && !isEmptyRecord(value.spec))
      add(["spec"], "a DeploymentConfig has no spec");
    if (!nameOk || problems.length > 0) return { problems };
    const line = doc.lineOf(["metadata", "name"]);
    return { config: { name: metadata.name as string, doc, line }, problems };
  }
  let namespace = defaultNamespace;
  if (metadata.namespace !== undefined && metadata.namespace !== null) {
    if (checkField(dnsLabel, metadata.namespace, ["metadata", "namespace"], add))
      namespace = metadata.namespace as string;
  }
  const labels = checkLabels(metadata.labels, add);
  if (plural === undefined) return { problems };
  if (!isRecord(value.spec)) {
    add(["spec"], value.spec === undefined ? "is required" : "must be a mapping");
    return { problems };
  }
  const checked = checkSpec(plural, value.spec, add);
  if (!nameOk || problems.length > 0 || !checked.spec) {
    const files: FileRefs = {
      doc,
      kind: kind as string,
      ...(name !== undefined ? { name } : {}),
      ...(checked.codePath !== undefined ? { codePath: checked.codePath } : {}),
      ...(checked.archivePath ? { archivePath: checked.archivePath } : {}),
    };
    return { problems, files };
  }
  return {
    object: {
      plural,
      kind: kind as string,
      namespace,
      name: metadata.name as string,
      labels,
      spec: checked.spec,
      doc,
      line: doc.lineOf(["metadata", "name"]),
      ...(checked.codePath !== undefined ? { codePath: checked.codePath } : {}),
      ...(checked.archivePath ? { archivePath: checked.archivePath } : {}),
    },
    problems,
  };
}

type Add = (path: FieldPath, message: string) => void;

function checkKind(kind: unknown, add: Add): SpecPlural | undefined {
  if (kind === undefined) {
    add(["kind"], "is required");
    return undefined;
  }
  if (typeof kind === "string") {
    const plural = PLURAL_OF[kind];
    if (plural) return plural;
    if (kind === DEPLOYMENT_CONFIG) return undefined;
    if (kind === "Secret") {
      add(
        ["kind"],
        "secrets do not belong in spec files (their values would be in git): create them with `fizz secret create` and name them in a function's spec.secrets",
      );
      return undefined;
    }
  }
  add(
    ["kind"],
    `unknown kind ${JSON.stringify(kind)} (known: ${[...Object.keys(PLURAL_OF), DEPLOYMENT_CONFIG].join(", ")})`,
  );
  return undefined;
}

function checkLabels(labels: unknown, add: Add): Record<string, string> {
  if (labels === undefined || labels === null) return {};
  const parsed = CreateInput.shape.labels.safeParse(labels);
  if (!parsed.success) {
    for (const w of wordIssues(parsed.error.issues, labels))
      add(["metadata", "labels", ...w.path], w.message);
    return {};
  }
  if (Object.hasOwn(parsed.data, SPEC_LABEL)) {
    add(
      ["metadata", "labels", SPEC_LABEL],
      "is set by fizz spec apply from the DeploymentConfig's name; remove it",
    );
  }
  return parsed.data;
}

function checkField(
  schema: { safeParse(v: unknown): { success: boolean; error?: { issues: unknown[] } } },
  value: unknown,
  path: FieldPath,
  add: Add,
): boolean {
  const r = schema.safeParse(value);
  if (r.success) return true;
  for (const w of wordIssues((r.error?.issues ?? []) as SchemaIssue[], value))
    add([...path, ...w.path], w.message);
  return false;
}

interface CheckedSpec {
  /** Undefined when the spec is invalid. */
  spec?: Record<string, unknown>;
  codePath?: string;
  archivePath?: { use: "source" | "deployment"; path: string };
}

function checkSpec(plural: SpecPlural, raw: Record<string, unknown>, add: Add): CheckedSpec {
  const schema = specInputSchemas[plural];
  const known = Object.keys(schema.shape);
  // As the registry does on create: null means "not given".
  const input: Record<string, unknown> = {};
  for (const [key, v] of Object.entries(raw)) {
    if (!known.includes(key)) add(["spec", key], `unknown field (known: ${known.join(", ")})`);
    else if (v !== null) input[key] = v;
  }
  const out: CheckedSpec = {};
  const fieldOf = new Map<string, string>();
  if (plural === "functions" && input.code !== undefined) {
    const path = pathForm(input.code, ["spec", "code"], add);
    if (path !== undefined) out.codePath = path;
    input.code = { filename: basename(path ?? "code"), content: "" };
    fieldOf.set("code.filename", "code.path");
  }
  if (plural === "packages") {
    for (const use of ["source", "deployment"] as const) {
      if (input[use] === undefined) continue;
      const path = pathForm(input[use], ["spec", use], add);
      if (path !== undefined) out.archivePath = { use, path };
      input[use] = PLACEHOLDER_ARCHIVE;
    }
  }
  let cronReason: string | undefined;
  if (plural === "timetriggers") cronReason = cronProblem(input.cron);
  if (cronReason !== undefined) add(["spec", "cron"], cronReason);
  const parsed = schema.safeParse(input);
  if (!parsed.success) {
    for (const w of wordIssues(parsed.error.issues, input)) {
      const field = w.path.join(".");
      if (cronReason !== undefined && field === "cron") continue;
      // A placeholder's field is reported as the `path` the user wrote.
      const mapped = fieldOf.get(field);
      add(["spec", ...(mapped ? mapped.split(".") : w.path)], w.message);
    }
    return out;
  }
  const spec = parsed.data as Record<string, unknown>;
  if (extraChecks(plural, spec, add)) out.spec = spec;
  return out;
}

/** `{ path: <file> }`, relative to the YAML file's directory. */
function pathForm(value: unknown, at: FieldPath, add: Add): string | undefined {
  const hint = "must be { path: <file or directory> }, relative to this YAML file";
  if (!isRecord(value)) {
    add(at, hint);
    return undefined;
  }
  let ok = true;
  for (const key of Object.keys(value))
    if (key !== "path") {
      add([...at, key], `unknown field: ${hint}`);
      ok = false;
    }
  const path = valueAt(value, ["path"]);
  if (typeof path !== "string" || path === "") {
    add([...at, "path"], path === undefined ? "is required" : "must be a non-empty string");
    return undefined;
  }
  return ok ? path : undefined;
}

/** The registry checks schedules with the scheduler's parser; its reason beats "invalid". */
function cronProblem(cron: unknown): string | undefined {
  if (typeof cron !== "string" || cron.trim() === "" || cron.length > 128) return undefined;
  try {
    checkSchedule(cron);
    return undefined;
  } catch (err) {
    return (err as Error).message;
  }
}

/** The registry's checks beyond the schema (validation.ts finishSpec), in its words. */
function extraChecks(plural: SpecPlural, spec: Record<string, unknown>, add: Add): boolean {
  if (plural === "functions") {
    const min = spec.minInstances as number;
    const max = spec.maxInstances as number;
    if (min > max) {
      add(["spec", "minInstances"], `${min} is above spec.maxInstances (${max})`);
      return false;
    }
  } else if (plural === "httptriggers") {
    const { path, prefix } = spec as { path?: string; prefix?: string };
    const problem = routeProblem({
      ...(path !== undefined ? { path } : {}),
      ...(prefix !== undefined ? { prefix } : {}),
    });
    if (problem) {
      // The rule's message starts with the field; the problem line names it already.
      add(problem.field.split("."), problem.message.replace(`${problem.field}: `, ""));
      return false;
    }
  } else if (plural === "configmaps") {
    const data = spec.data as Record<string, string>;
    let total = 0;
    for (const v of Object.values(data)) total += Buffer.byteLength(v, "utf8");
    if (total > CONFIG_MAX_BYTES) {
      add(
        ["spec", "data"],
        `values are ${total} bytes together, over the limit of ${CONFIG_MAX_BYTES}`,
      );
      return false;
    }
  }
  return true;
}

export function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function isEmptyRecord(value: unknown): boolean {
  return isRecord(value) && Object.keys(value).length === 0;
}
