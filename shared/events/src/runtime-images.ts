/**
 * Which local runtime an environment image names on the process backend. The registry uses this
 * to refuse an unknown image at `env create` (unless the environment gives a command); the
 * poolkeeper uses it to start the loader. Any registry prefix or tag is accepted:
 * `ghcr.io/acme/fizz/env-python:3.12` is the python runtime.
 */
export const RuntimeImages = {
  "env-node": "node",
  "env-python": "python",
} as const;
export type RuntimeName = (typeof RuntimeImages)[keyof typeof RuntimeImages];

export function runtimeOfImage(image: string): RuntimeName | undefined {
  const withoutDigest = image.split("@")[0] ?? image;
  const last = withoutDigest.split("/").pop() ?? withoutDigest;
  const repo = last.split(":")[0] ?? last;
  return Object.hasOwn(RuntimeImages, repo)
    ? RuntimeImages[repo as keyof typeof RuntimeImages]
    : undefined;
}
