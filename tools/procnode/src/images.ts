import { createRequire } from "node:module";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { runtimeOfImage } from "@fizz/events";

/**
 * How a container image runs as a local program. There are no images here: an image name only
 * picks a program on this machine, and that choice is explicit, never guessed.
 */
export interface ImageRun {
  /** The image's entrypoint as a host argv: the executable and its fixed arguments. */
  command: string[];
  /** The image's own environment (its Dockerfile ENV); the container's env wins over it. */
  env?: Record<string, string>;
  /**
   * Whether a container `command` may replace `command` (Kubernetes replaces the ENTRYPOINT).
   * Only for images whose programs are the host's (busybox, node, python). Otherwise a container
   * with a `command` is refused (CommandNotSupported): its paths exist only inside the image.
   */
  allowCommand?: boolean;
  /** Turns the container's args into host args, e.g. adds the flag that binds the pod IP. */
  args?: (args: string[], ctx: { podIP: string }) => string[];
}

export type ImageMap = (image: string) => ImageRun | undefined;

const ROOT = path.resolve(import.meta.dirname, "../../..");
const SERVICES = new Set(["registry", "scheduler", "poolkeeper", "gateway", "kubewatcher"]);

/** `ghcr.io/acme/fizz/gateway:1.2@sha256:…` → { path: ["ghcr.io","acme","fizz","gateway"], repo: "gateway" }. */
export function parseImage(image: string): {
  segments: string[];
  repo: string;
  tag: string | undefined;
} {
  const noDigest = image.split("@")[0] ?? image;
  const segments = noDigest.split("/");
  const last = segments.pop() ?? "";
  const [repo = "", tag] = last.split(":");
  return { segments: [...segments, repo], repo, tag };
}

function hasFlag(args: string[], ...flags: string[]): boolean {
  return args.some((a) => flags.includes(a) || flags.some((f) => a.startsWith(`${f}=`)));
}

/**
 * The Fizz images, NATS and Redis, and a few images whose programs every host has:
 * - `fizz/env-node`, `fizz/env-python` (any registry prefix or tag): the runtimes in this repo;
 * - `fizz/builder-node`, `fizz/builder-python`: the builder pods' program (runtimes/builder);
 * - `fizz/<service>`: `node --import tsx services/<service>/src/main.ts`;
 * - `nats:*`: `nats-server ARGS`, plus `-a <podIP>` unless the args bind an address;
 * - `redis:*`: `redis-server ARGS` (a leading `redis-server`, which the image's entrypoint
 *   accepts, is dropped), plus `--bind <podIP>` unless given;
 * - `busybox`, `alpine`: `sh` (a container `command` replaces it); `node:*`, `python:*`: the host's
 *   node and python3 (a container `command` replaces them).
 */
export const defaultImageMap: ImageMap = (image) => {
  const { segments, repo } = parseImage(image);
  const runtime = runtimeOfImage(image);
  // The builder pods' program (any registry prefix or tag, like the runtimes).
  if (repo === "builder-node" || repo === "builder-python")
    return { command: [process.execPath, path.join(ROOT, "runtimes/builder/server.mjs")] };
  if (runtime === "node")
    return { command: [process.execPath, path.join(ROOT, "runtimes/node/server.mjs")] };
  if (runtime === "python")
    return { command: ["python3", path.join(ROOT, "runtimes/python/server.py")] };
  if (SERVICES.has(repo) && segments.at(-2) === "fizz") {
    // Absolute: `--import tsx` would be resolved from the pod's working directory, which has no node_modules.
    const tsx = pathToFileURL(createRequire(import.meta.url).resolve("tsx")).href;
    return {
      command: [process.execPath, "--import", tsx, path.join(ROOT, `services/${repo}/src/main.ts`)],
    };
  }
  const official = segments.length === 1 || (segments.length === 2 && segments[0] === "library");
  if (!official) return undefined;
  switch (repo) {
    case "nats":
      return {
        command: ["nats-server"],
        args: (args, { podIP }) =>
          hasFlag(args, "-a", "--addr", "--net") ? args : [...args, "-a", podIP],
      };
    case "redis":
      return {
        command: ["redis-server"],
        args: (args, { podIP }) => {
          const rest = args[0] === "redis-server" ? args.slice(1) : args;
          return hasFlag(rest, "--bind") ? rest : [...rest, "--bind", podIP];
        },
      };
    case "busybox":
    case "alpine":
      return { command: ["sh"], allowCommand: true };
    case "node":
      return { command: [process.execPath], allowCommand: true };
    case "python":
      return { command: ["python3"], allowCommand: true };
    default:
      return undefined;
  }
};
