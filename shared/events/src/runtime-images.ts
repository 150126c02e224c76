/**
 * Which local runtime an environment image names on the process backend. The registry uses this
 * to refuse an unknown image at `env create` (unless the environment gives a command); the
 * poolkeeper uses it to start the loader. Any registry prefix or tag is accepted:
 * `ghcr.io/acme/fizz/env-python:3.12` is the python runtime.
 */
export const RuntimeImages = {
  "env-node": "node",
  "env-python": "python",
  "env-go": "go",
  "env-php": "php",
  "env-ruby": "ruby",
  "env-dotnet": "dotnet",
} as const;
export type RuntimeName = (typeof RuntimeImages)[keyof typeof RuntimeImages];

/** Every runtime, in the order the docs and messages list them. */
export const RUNTIME_NAMES: readonly RuntimeName[] = Object.values(RuntimeImages);

/**
 * Runtimes whose functions are compiled by the builder (runtimes/<lang>/build.sh): their warm
 * instances load build output, never source, so a function needs a package, not `spec.code`.
 */
export const COMPILED_RUNTIMES: ReadonlySet<RuntimeName> = new Set<RuntimeName>(["go", "dotnet"]);

export function isCompiledRuntime(runtime: RuntimeName | undefined): boolean {
  return runtime !== undefined && COMPILED_RUNTIMES.has(runtime);
}

/** The image's last path segment without tag or digest: `ghcr.io/a/env-go:1@sha256:..` → `env-go`. */
function repoOf(image: string): string {
  const withoutDigest = image.split("@")[0] ?? image;
  const last = withoutDigest.split("/").pop() ?? withoutDigest;
  return last.split(":")[0] ?? last;
}

export function runtimeOfImage(image: string): RuntimeName | undefined {
  const repo = repoOf(image);
  return Object.hasOwn(RuntimeImages, repo)
    ? RuntimeImages[repo as keyof typeof RuntimeImages]
    : undefined;
}

/** The builder image of a runtime: `fizz/builder-<runtime>` (runtimes/builder/Dockerfile.<runtime>). */
export function builderImageOf(runtime: RuntimeName): string {
  return `fizz/builder-${runtime}`;
}

/** `fizz/builder-go` (any prefix or tag) → go; any other image → undefined. */
export function runtimeOfBuilderImage(image: string): RuntimeName | undefined {
  const repo = repoOf(image);
  if (!repo.startsWith("builder-")) return undefined;
  const runtime = repo.slice("builder-".length);
  return (RUNTIME_NAMES as readonly string[]).includes(runtime)
    ? (runtime as RuntimeName)
    : undefined;
}
