/**
 * One spec document: its envelope (apiVersion, kind, metadata) checked here, its spec by
 * spec-schema.ts against the registry's own input schemas, so what `fizz spec validate` accepts
 * is what the registry accepts.
 */
import { API_VERSION, CreateInput, dnsLabel, Kinds } from "@fizz/events";
import type { ArchivePath, CodeFile } from "./files.js";
import type { SpecProblem } from "./problems.js";
import { checkSpec, isRecord, type Add, type SpecPlural } from "./spec-schema.js";
import { isForbiddenVariable, VARIABLE_NAME } from "./variables.js";
import { wordIssues, type SchemaIssue } from "./wording.js";
import { DEPLOYMENT_CONFIG, type FieldPath, type RawDocument } from "./yaml-docs.js";

export type { SpecPlural };

export const SPEC_LABEL = "fizz.dev/spec";
export { DEPLOYMENT_CONFIG };

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
  /** The environment variables the spec may substitute (spec.variables). */
  variables: string[];
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
    const variables = checkConfigSpec(value.spec, add);
    if (!nameOk || problems.length > 0) return { problems };
    const line = doc.lineOf(["metadata", "name"]);
    return { config: { name: metadata.name as string, doc, line, variables }, problems };
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

/** A DeploymentConfig's optional `spec: { variables: [NAME, ...] }`. */
function checkConfigSpec(spec: unknown, add: Add): string[] {
  if (spec === undefined || spec === null) return [];
  if (!isRecord(spec)) {
    add(["spec"], "must be a mapping (spec.variables lists the variables the spec may use)");
    return [];
  }
  for (const key of Object.keys(spec))
    if (key !== "variables") add(["spec", key], "unknown field (known: variables)");
  const list = spec.variables;
  if (list === undefined || list === null) return [];
  if (!Array.isArray(list)) {
    add(["spec", "variables"], "must be a list of environment variable names");
    return [];
  }
  const names: string[] = [];
  list.forEach((name: unknown, i) => {
    const at = ["spec", "variables", i];
    if (typeof name !== "string" || !VARIABLE_NAME.test(name))
      add(
        at,
        `${JSON.stringify(name)} is not an environment variable name (letters, digits and '_', not starting with a digit)`,
      );
    else if (isForbiddenVariable(name))
      add(
        at,
        `${name} may not be declared: FIZZ_* variables configure the CLI (FIZZ_TOKEN is the registry token) and never go into a spec`,
      );
    else if (names.includes(name)) add(at, `${name} is declared twice`);
    else names.push(name);
  });
  return names;
}
