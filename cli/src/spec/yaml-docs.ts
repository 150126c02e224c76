/**
 * Spec directories to YAML documents that remember where every value came from. The `yaml`
 * package keeps each node's offset and a LineCounter turns offsets into lines, so any field path
 * (`spec.minInstances`) can be traced back to the line that holds it.
 */
import { open, readdir, realpath, stat } from "node:fs/promises";
import { join } from "node:path";
import {
  isAlias,
  isMap,
  isScalar,
  isSeq,
  LineCounter,
  parse as parseYaml,
  parseAllDocuments,
  type Document,
  type Node as YamlNode,
  type Scalar,
} from "yaml";
import { reasonOf } from "../archive-upload.js";
import { CliError } from "../errors.js";
import type { SpecProblem } from "./problems.js";
import { findProjectRoot, type ProjectRoot } from "./project-root.js";
import { substitute, VARIABLE_NAME } from "./variables.js";

export type FieldPath = ReadonlyArray<string | number>;

/** The kind of the document that names a spec (documents.ts checks it). */
export const DEPLOYMENT_CONFIG = "DeploymentConfig";

/** One YAML document of a spec file, its variables already substituted. */
export interface RawDocument {
  /** Display path of the file (`specs/functions.yaml`). */
  file: string;
  /** Absolute directory of the file: paths in the document are relative to it. */
  dir: string;
  /** The project directory: files the document names must be inside it (project-root.ts). */
  root: ProjectRoot;
  /** The document as plain data (maps, lists, strings, numbers...). */
  value: unknown;
  /** The line of the value at `path`, or of its nearest ancestor present in the file. */
  lineOf(path: FieldPath): number;
  /** Problems met while substituting, with the path of the value they are in. */
  problems: Array<{ path: FieldPath; line: number; message: string }>;
  variables: Array<{ name: string; defaulted: boolean }>;
}

/** A spec file larger than this is not a spec someone wrote by hand. */
const MAX_SPEC_FILE_BYTES = 4 * 1024 * 1024;
const SPEC_FILE = /\.ya?ml$/;

export interface LoadedFiles {
  documents: RawDocument[];
  problems: SpecProblem[];
  /** Display paths of the files read, in order. */
  files: string[];
}

/**
 * Reads `*.yaml` and `*.yml` of each directory (not recursively), in name order. A directory
 * that cannot be read, or holds no spec file, is an error of the command line's `-f`.
 */
export async function readSpecDirs(
  dirs: string[],
  env: Record<string, string | undefined>,
): Promise<LoadedFiles> {
  const out: LoadedFiles = { documents: [], problems: [], files: [] };
  const parsed: Parsed[] = [];
  const seen = new Set<string>();
  for (const dir of dirs) {
    let real: string;
    let names: string[];
    try {
      real = await realpath(dir);
      if (!(await stat(real)).isDirectory())
        throw new CliError(`-f "${dir}" is not a directory: give the directory of the spec files`);
      names = (await readdir(real)).filter((n) => SPEC_FILE.test(n)).sort();
    } catch (err) {
      if (err instanceof CliError) throw err;
      throw new CliError(`cannot read -f "${dir}": ${reasonOf(err)}`);
    }
    // `-f specs -f ./specs/` is one directory, read once.
    if (seen.has(real)) continue;
    seen.add(real);
    const root = await findProjectRoot(real, env.HOME);
    let found = 0;
    for (const name of names) {
      const file = join(dir, name);
      const text = await readSpecFile(join(real, name), file);
      if (text === undefined) continue;
      found += 1;
      out.files.push(file);
      parsed.push(...parseFile(text, { file, dir: real, root }, out));
    }
    if (found === 0) throw new CliError(`-f "${dir}" holds no spec files (*.yaml, *.yml)`);
  }
  // Which variables may be read is known only once every file is parsed: the DeploymentConfig
  // may be in any of them.
  const declared = declaredVariables(parsed);
  for (const p of parsed) finish(p, env, declared, out);
  return out;
}

/** The file's text; undefined for an entry that is not a regular file (a directory `x.yaml/`). */
async function readSpecFile(path: string, shown: string): Promise<string | undefined> {
  const st = await stat(path).catch((err: unknown) => {
    throw new CliError(`cannot read "${shown}": ${reasonOf(err)}`);
  });
  if (!st.isFile()) return undefined;
  if (st.size > MAX_SPEC_FILE_BYTES)
    throw new CliError(`"${shown}" is ${st.size} bytes; a spec file may hold at most 4 MiB`);
  const handle = await open(path, "r");
  try {
    return await handle.readFile("utf8");
  } finally {
    await handle.close();
  }
}

interface Parsed {
  doc: Document;
  where: { file: string; dir: string; root: ProjectRoot };
  line: (offset: number) => number;
}

function parseFile(text: string, where: Parsed["where"], out: LoadedFiles): Parsed[] {
  const lines = new LineCounter();
  const line = (offset: number) => lines.linePos(offset).line;
  const docs = parseAllDocuments(text, { lineCounter: lines, prettyErrors: false });
  const parsed: Parsed[] = [];
  for (const doc of docs) {
    if (doc.errors.length > 0) {
      for (const err of doc.errors)
        out.problems.push({ file: where.file, line: line(err.pos[0]), message: err.message });
      continue;
    }
    parsed.push({ doc, where, line });
  }
  return parsed;
}

/**
 * The names listed in DeploymentConfig documents' spec.variables, as written (variables are not
 * substituted in the list itself). documents.ts reports a malformed list; its well-formed names
 * still count, so one typo does not bury the file under "not declared" problems.
 */
function declaredVariables(parsed: Parsed[]): Set<string> {
  const names = new Set<string>();
  for (const { doc } of parsed) {
    const config = doc.contents;
    if (!isMap(config) || !isScalar(config.get("kind", true))) continue;
    if ((config.get("kind", true) as Scalar).value !== DEPLOYMENT_CONFIG) continue;
    const spec = config.get("spec", true);
    const list = isMap(spec) ? spec.get("variables", true) : undefined;
    if (!isSeq(list)) continue;
    for (const item of list.items)
      if (isScalar(item) && typeof item.value === "string" && VARIABLE_NAME.test(item.value))
        names.add(item.value);
  }
  return names;
}

function finish(
  { doc, where, line }: Parsed,
  env: Record<string, string | undefined>,
  declared: ReadonlySet<string>,
  out: LoadedFiles,
): void {
  const problems: RawDocument["problems"] = [];
  const variables: RawDocument["variables"] = [];
  substituteAll(doc, env, declared, line, problems, variables);
  let value: unknown;
  try {
    value = doc.toJS({ maxAliasCount: 100 });
  } catch (err) {
    const start = doc.contents?.range?.[0] ?? 0;
    out.problems.push({ file: where.file, line: line(start), message: (err as Error).message });
    return;
  }
  // A `---` at the end or a file of comments: nothing to apply.
  if (value === null || value === undefined) return;
  out.documents.push({
    ...where,
    value,
    lineOf: (path) => lineOf(doc, path, line),
    problems,
    variables,
  });
}

/**
 * Replaces variables in every string value, in place. An unquoted value is read again as YAML
 * once substituted, so `poolSize: ${POOL:-3}` is the number 3, as if the file had said so; a
 * quoted one stays a string.
 */
function substituteAll(
  doc: Document,
  env: Record<string, string | undefined>,
  declared: ReadonlySet<string>,
  line: (offset: number) => number,
  problems: RawDocument["problems"],
  variables: RawDocument["variables"],
): void {
  walkScalars(doc.contents, [], (node, path) => {
    if (typeof node.value !== "string" || !node.value.includes("$")) return;
    const result = substitute(node.value, env, declared);
    variables.push(...result.used);
    const at = line(node.range?.[0] ?? 0);
    for (const message of result.problems) problems.push({ path, line: at, message });
    // A value with a problem stays as written: its problem is the one worth reading.
    if (result.problems.length > 0 || result.value === node.value) return;
    node.value = node.type === "PLAIN" ? retyped(result.value) : result.value;
  });
}

function retyped(text: string): unknown {
  let parsed: unknown;
  try {
    parsed = parseYaml(text);
  } catch {
    return text;
  }
  // Only scalars: a variable must not be able to turn a value into a map or a list.
  return typeof parsed === "number" || typeof parsed === "boolean" || parsed === null
    ? parsed
    : text;
}

function walkScalars(
  node: unknown,
  path: Array<string | number>,
  visit: (node: Scalar, path: FieldPath) => void,
): void {
  if (isMap(node)) {
    for (const pair of node.items) walkScalars(pair.value, [...path, keyOf(pair.key)], visit);
  } else if (isSeq(node)) {
    node.items.forEach((item, i) => walkScalars(item, [...path, i], visit));
  } else if (isScalar(node) && !isAlias(node)) {
    visit(node, path);
  }
}

function keyOf(key: unknown): string {
  return isScalar(key) ? String(key.value) : String(key);
}

/** The line of the deepest node of `path` present: a key's own line when the path ends at one. */
function lineOf(doc: Document, path: FieldPath, line: (offset: number) => number): number {
  let node: unknown = doc.contents;
  let at = line((node as YamlNode | null)?.range?.[0] ?? 0);
  for (const segment of path) {
    if (isMap(node)) {
      const pair = node.items.find((p) => keyOf(p.key) === String(segment));
      if (!pair) break;
      const keyStart = (pair.key as YamlNode | null)?.range?.[0];
      if (keyStart !== undefined) at = line(keyStart);
      node = pair.value;
    } else if (isSeq(node) && typeof segment === "number") {
      const item: unknown = node.items[segment];
      if (item === undefined) break;
      const start = (item as YamlNode | null)?.range?.[0];
      if (start !== undefined) at = line(start);
      node = item;
    } else {
      break;
    }
  }
  return at;
}
