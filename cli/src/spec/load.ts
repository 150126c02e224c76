/**
 * A spec as a whole: every document checked, the files it names read, names unique, exactly one
 * DeploymentConfig, and references between its objects resolved. References to objects the spec
 * does not hold are returned for the registry to answer (state.ts).
 */
import {
  checkDocument,
  DEPLOYMENT_CONFIG,
  type DeploymentConfigDoc,
  type FileRefs,
  type SpecObject,
  type SpecPlural,
} from "./documents.js";
import { checkArchivePath, readCode, type CodeFile } from "./files.js";
import type { SpecProblem } from "./problems.js";
import { readSpecDirs, type FieldPath, type RawDocument } from "./yaml-docs.js";

/** Creation order; deletion runs it backwards. */
export const APPLY_ORDER: readonly SpecPlural[] = [
  "configmaps",
  "environments",
  "packages",
  "functions",
  "httptriggers",
  "mqtriggers",
  "timetriggers",
  "watchtriggers",
];

export const TRIGGER_PLURALS: readonly SpecPlural[] = [
  "httptriggers",
  "mqtriggers",
  "timetriggers",
  "watchtriggers",
];

/** A reference to an object the spec does not hold: it has to be in the registry. */
export interface ExternalRef {
  plural: SpecPlural | "secrets";
  namespace: string;
  name: string;
  from: SpecObject;
  field: string;
  line: number;
  /** Secrets and configmaps are looked up only when an instance starts: a warning, not an error. */
  required: boolean;
}

export interface LoadedSpec {
  name: string;
  config: DeploymentConfigDoc;
  /** In APPLY_ORDER, then in file and document order. */
  objects: SpecObject[];
  external: ExternalRef[];
  /** Every namespace the documents use. */
  namespaces: string[];
  files: string[];
  variables: Array<{ name: string; defaulted: boolean }>;
}

export interface LoadOptions {
  dirs: string[];
  env: Record<string, string | undefined>;
  namespace: string;
  codeMaxBytes: number;
}

export async function loadSpec(
  opts: LoadOptions,
): Promise<{ spec?: LoadedSpec; problems: SpecProblem[] }> {
  const read = await readSpecDirs(opts.dirs, opts.env);
  const problems = [...read.problems];
  const objects: SpecObject[] = [];
  const configs: DeploymentConfigDoc[] = [];
  const files: FileRefs[] = [];
  for (const doc of read.documents) {
    const checked = checkDocument(doc, opts.namespace);
    problems.push(...checked.problems);
    if (checked.object) objects.push(checked.object);
    if (checked.config) configs.push(checked.config);
    const refs = checked.object ?? checked.files;
    if (refs) files.push(refs);
  }
  const config = checkConfigs(configs, read.documents, opts.dirs, problems);
  checkDuplicates(objects, problems);
  await readFiles(files, opts.codeMaxBytes, problems);
  const external = resolveReferences(objects, problems);
  const variables = new Map<string, boolean>();
  for (const doc of read.documents)
    for (const v of doc.variables)
      variables.set(v.name, (variables.get(v.name) ?? true) && v.defaulted);
  if (problems.length > 0 || !config) return { problems: sortProblems(problems) };
  const ordered = APPLY_ORDER.flatMap((plural) => objects.filter((o) => o.plural === plural));
  return {
    spec: {
      name: config.name,
      config,
      objects: ordered,
      external,
      namespaces: [...new Set(ordered.map((o) => o.namespace))].sort(),
      files: read.files,
      variables: [...variables].map(([name, defaulted]) => ({ name, defaulted })),
    },
    problems: [],
  };
}

/**
 * What `destroy` needs: the spec's name and the namespaces its documents use. The documents
 * themselves may be broken or name files that are gone; only YAML syntax and the
 * DeploymentConfig have to be right.
 */
export async function loadSpecIdentity(
  opts: LoadOptions,
): Promise<{ name?: string; namespaces: string[]; problems: SpecProblem[] }> {
  const read = await readSpecDirs(opts.dirs, opts.env);
  const problems = [...read.problems];
  const configs: DeploymentConfigDoc[] = [];
  const namespaces = new Set<string>();
  for (const doc of read.documents) {
    const checked = checkDocument(doc, opts.namespace);
    if (checked.config) configs.push(checked.config);
    else if (checked.object) namespaces.add(checked.object.namespace);
    else if (isConfigDoc(doc)) problems.push(...checked.problems);
    else namespaces.add(namespaceOf(doc) ?? opts.namespace);
  }
  const config = checkConfigs(configs, read.documents, opts.dirs, problems);
  return {
    ...(config && problems.length === 0 ? { name: config.name } : {}),
    namespaces: [...namespaces].sort(),
    problems: sortProblems(problems),
  };
}

function isConfigDoc(doc: RawDocument): boolean {
  return (doc.value as { kind?: unknown } | null)?.kind === DEPLOYMENT_CONFIG;
}

function namespaceOf(doc: RawDocument): string | undefined {
  const ns = (doc.value as { metadata?: { namespace?: unknown } } | null)?.metadata?.namespace;
  return typeof ns === "string" && /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/.test(ns) ? ns : undefined;
}

function checkConfigs(
  configs: DeploymentConfigDoc[],
  documents: RawDocument[],
  dirs: string[],
  problems: SpecProblem[],
): DeploymentConfigDoc | undefined {
  const first = configs[0];
  if (!first) {
    // A broken DeploymentConfig has its own problem already; only a missing one needs this.
    if (!documents.some(isConfigDoc))
      problems.push({
        file: dirs.join(", "),
        message: `no ${DEPLOYMENT_CONFIG} document: the spec needs exactly one (create it with "fizz spec init")`,
      });
    return undefined;
  }
  for (const extra of configs.slice(1)) {
    problems.push({
      file: extra.doc.file,
      line: extra.line,
      kind: DEPLOYMENT_CONFIG,
      name: extra.name,
      message: `a second ${DEPLOYMENT_CONFIG} (the first is ${first.name} at ${first.doc.file}:${first.line}); the spec needs exactly one`,
    });
  }
  return configs.length === 1 ? first : undefined;
}

function checkDuplicates(objects: SpecObject[], problems: SpecProblem[]): void {
  const seen = new Map<string, SpecObject>();
  for (const o of objects) {
    const key = `${o.plural}/${o.namespace}/${o.name}`;
    const before = seen.get(key);
    if (!before) {
      seen.set(key, o);
      continue;
    }
    problems.push(
      problemAt(
        o,
        ["metadata", "name"],
        `defined twice in namespace "${o.namespace}"; the first is at ${before.doc.file}:${before.line}`,
      ),
    );
  }
}

/** Reads what each document names; a valid object keeps what was read (SpecObject is a FileRefs). */
async function readFiles(
  refs: Array<FileRefs & Partial<SpecObject>>,
  codeMaxBytes: number,
  problems: SpecProblem[],
): Promise<void> {
  const codeFiles = new Map<string, CodeFile>();
  for (const o of refs) {
    if (o.codePath !== undefined) {
      const read = await readCode(o.doc, o.codePath, codeMaxBytes, codeFiles);
      if ("problem" in read) problems.push(problemAt(o, ["spec", "code", "path"], read.problem));
      else o.codeFile = read.ok;
    }
    if (o.archivePath) {
      const checked = await checkArchivePath(o.doc, o.archivePath.path);
      if ("problem" in checked)
        problems.push(problemAt(o, ["spec", o.archivePath.use, "path"], checked.problem));
      else o.archive = checked.ok;
    }
  }
}

/** References inside the spec are checked here; the others are returned. */
function resolveReferences(objects: SpecObject[], problems: SpecProblem[]): ExternalRef[] {
  const index = new Map(objects.map((o) => [`${o.plural}/${o.namespace}/${o.name}`, o]));
  const external: ExternalRef[] = [];
  const refer = (
    from: SpecObject,
    plural: ExternalRef["plural"],
    name: unknown,
    path: FieldPath,
    required = true,
  ): SpecObject | undefined => {
    if (typeof name !== "string") return undefined;
    const found = index.get(`${plural}/${from.namespace}/${name}`);
    if (found) return found;
    external.push({
      plural,
      namespace: from.namespace,
      name,
      from,
      field: path.join("."),
      line: from.doc.lineOf(path),
      required,
    });
    return undefined;
  };
  for (const o of objects) {
    const spec = o.spec;
    if (o.plural === "functions" || o.plural === "packages") {
      refer(o, "environments", spec.environment, ["spec", "environment"]);
    }
    if (o.plural === "functions") {
      const pkgName = (spec.package as { name?: unknown } | undefined)?.name;
      const pkg = refer(o, "packages", pkgName, ["spec", "package", "name"]);
      if (pkg && pkg.spec.environment !== spec.environment) {
        problems.push(
          problemAt(
            o,
            ["spec", "package", "name"],
            `package "${pkg.name}" is for environment "${String(pkg.spec.environment)}", the function runs in "${String(spec.environment)}"`,
          ),
        );
      }
      (spec.configmaps as string[] | undefined)?.forEach((n, i) =>
        refer(o, "configmaps", n, ["spec", "configmaps", i], false),
      );
      (spec.secrets as string[] | undefined)?.forEach((n, i) =>
        refer(o, "secrets", n, ["spec", "secrets", i], false),
      );
    }
    if ((TRIGGER_PLURALS as readonly string[]).includes(o.plural))
      refer(o, "functions", spec.function, ["spec", "function"]);
  }
  return external;
}

export function problemAt(o: FileRefs, path: FieldPath, message: string): SpecProblem {
  return {
    file: o.doc.file,
    line: o.doc.lineOf(path),
    kind: o.kind,
    ...(o.name !== undefined ? { name: o.name } : {}),
    field: path.join("."),
    message,
  };
}

/** By file, then line, so the list reads top to bottom like the files. */
function sortProblems(problems: SpecProblem[]): SpecProblem[] {
  return [...problems].sort(
    (a, b) => a.file.localeCompare(b.file) || (a.line ?? 0) - (b.line ?? 0),
  );
}
