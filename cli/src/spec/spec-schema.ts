/**
 * A document's `spec` against the registry's input schema (@fizz/events specInputSchemas) and
 * the checks the registry makes beyond it, with the `path` forms of code and archives standing in
 * as placeholders for what the CLI uploads.
 */
import { basename } from "node:path";
import {
  CONFIG_MAX_BYTES,
  checkSchedule,
  routeProblem,
  specInputSchemas,
  type KindPlural,
} from "@fizz/events";
import { valueAt, wordIssues } from "./wording.js";
import type { FieldPath } from "./yaml-docs.js";

/** Every kind a spec may hold except secrets, whose values do not belong in files. */
export type SpecPlural = Exclude<KindPlural, "secrets">;

export type Add = (path: FieldPath, message: string) => void;

/** Stands in for an uploaded archive while the rest of a package spec is checked. */
const PLACEHOLDER_ARCHIVE = { digest: `sha256:${"0".repeat(64)}`, size: 0 };

export interface CheckedSpec {
  /** Undefined when the spec is invalid. */
  spec?: Record<string, unknown>;
  codePath?: string;
  archivePath?: { use: "source" | "deployment"; path: string };
}

export function checkSpec(plural: SpecPlural, raw: Record<string, unknown>, add: Add): CheckedSpec {
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
