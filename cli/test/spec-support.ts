/** Spec projects on disk for the spec tests: a temp dir with `specs/` and the files they name. */
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";

export interface Project {
  root: string;
  specs: string;
  /** Writes (or overwrites) files, paths relative to the project root. */
  write(files: Record<string, string | Buffer>): Promise<void>;
  remove(path: string): Promise<void>;
  cleanup(): Promise<void>;
}

export async function project(files: Record<string, string | Buffer> = {}): Promise<Project> {
  const root = await mkdtemp(join(tmpdir(), "fizz-spec-"));
  const p: Project = {
    root,
    specs: join(root, "specs"),
    async write(more) {
      for (const [rel, content] of Object.entries(more)) {
        await mkdir(dirname(join(root, rel)), { recursive: true });
        await writeFile(join(root, rel), content);
      }
    },
    remove: (path) => rm(join(root, path), { recursive: true, force: true }),
    cleanup: () => rm(root, { recursive: true, force: true }),
  };
  await mkdir(p.specs, { recursive: true });
  await p.write(files);
  return p;
}

/** A DeploymentConfig; `variables` are the ones the spec may read from the environment. */
export const CONFIG = (name: string, variables: string[] = []) => `apiVersion: fizz.dev/v1
kind: DeploymentConfig
metadata:
  name: ${name}
${variables.length > 0 ? `spec:\n  variables: [${variables.join(", ")}]\n` : ""}`;

/** One document; `spec` is YAML indented by the caller's template (two spaces). */
export function doc(kind: string, name: string, spec: string, extra = ""): string {
  return `---
apiVersion: fizz.dev/v1
kind: ${kind}
metadata:
  name: ${name}
${extra}spec:
${spec}`;
}
