// How the suite specializes a runtime with a fixture. An interpreted runtime (Node, Python) takes
// a Source in the JSON form as it is. A compiled one (Go, C#) declares `compile` on its
// RuntimeUnderTest: its instances load only the builder's output, so the suite turns a Source into
// the one-file package `{[filename]: source}`, compiles it, and sends the result in the archive
// form; packages are compiled the same way. Tests about the JSON form's own checks (validation,
// token, digest, 421, 409) keep sending the JSON form: those are answered before anything loads.
import { createHash } from "node:crypto";
import { type Files, packageArchive } from "./archive.js";
import {
  type ArchiveSpecializeOptions,
  type HttpResult,
  type Runtime,
  postJson,
  specializeArchive,
  specializeBody,
} from "./harness.js";
import type { RuntimeUnderTest, Source } from "./runtime-under-test.js";

export interface DeployOptions extends ArchiveSpecializeOptions {
  /** JSON form: send `digest` = sha256 of the code (the archive form always sends one). */
  withDigest?: boolean;
}

export interface Deployer {
  /** True when the runtime compiles: Sources go through the archive form. */
  compiled: boolean;
  /** Specializes `rt` with a Source fixture (JSON form, or compiled into a package). */
  source(rt: Runtime, src: Source, options?: DeployOptions): Promise<HttpResult>;
  /** Specializes `rt` with a package (compiled first when the runtime compiles). */
  package(rt: Runtime, files: Files, options?: DeployOptions): Promise<HttpResult>;
  /** The files a package is deployed as: `files`, or what `compile` made of them. */
  files(files: Files, entrypoint?: string): Promise<Files>;
  /** The files a Source is deployed as in the archive form (its one-file package, compiled). */
  sourceFiles(src: Source): Promise<Files>;
}

const hashOf = (files: Files, entrypoint: string | undefined) => {
  const hash = createHash("sha256").update(JSON.stringify(entrypoint ?? null));
  for (const name of Object.keys(files).sort()) {
    hash.update(`\0${name}\0`).update(files[name] ?? "");
  }
  return hash.digest("hex");
};

/** One per runtime; compile results are shared by all its tests (a compile can take seconds). */
export function deployer({ compile }: RuntimeUnderTest): Deployer {
  const compiled = new Map<string, Promise<Files>>();
  const files = (input: Files, entrypoint?: string): Promise<Files> => {
    if (!compile) return Promise.resolve(input);
    const key = hashOf(input, entrypoint);
    let out = compiled.get(key);
    if (!out) {
      out = compile(input, entrypoint);
      compiled.set(key, out);
      // A failed compile is not cached, so a retry compiles again.
      out.catch(() => compiled.delete(key));
    }
    return out;
  };
  const sourceFiles = (src: Source) => files({ [src.filename]: src.source }, src.entrypoint);

  const pkg = async (rt: Runtime, input: Files, options: DeployOptions = {}) => {
    const { withDigest: _ignored, ...rest } = options;
    const archive = await packageArchive(await files(input, options.entrypoint));
    return specializeArchive(rt, archive, rest);
  };

  const source = async (rt: Runtime, src: Source, options: DeployOptions = {}) => {
    const entrypoint = src.entrypoint === undefined ? {} : { entrypoint: src.entrypoint };
    if (compile) {
      const archive = await packageArchive(await sourceFiles(src));
      const { withDigest: _ignored, ...rest } = options;
      return specializeArchive(rt, archive, { ...entrypoint, ...rest });
    }
    const { withDigest, headers = {}, digest, chunked: _chunked, ...fields } = options;
    const body: Record<string, unknown> = specializeBody(src.filename, src.source, {
      ...entrypoint,
      ...fields,
    });
    if (withDigest) body.digest = `sha256:${createHash("sha256").update(src.source).digest("hex")}`;
    if (digest !== undefined) body.digest = digest;
    return postJson(rt.url, "/v2/specialize", body, headers);
  };

  return { compiled: compile !== undefined, source, package: pkg, files, sourceFiles };
}

/** The names at the top of a package: what `<FIZZ_WORKDIR>/fn/` holds once it is extracted. */
export function topLevel(files: Files): string[] {
  return [...new Set(Object.keys(files).map((p) => p.replace(/^\.\//, "").split("/")[0] ?? ""))]
    .filter((name) => name !== "")
    .sort();
}
