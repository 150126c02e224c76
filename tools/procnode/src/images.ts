import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { runtimeOfBuilderImage, runtimeOfImage, type RuntimeName } from "@fizz/events";

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
 * - `fizz/env-<runtime>` for node, python, go, php, ruby and dotnet (any registry prefix or tag):
 *   the runtimes in this repo, started as the poolkeeper's process backend starts them
 *   (runtimeCommand; Go and C# from runtimes/<lang>/.build, made by their prepare.mjs);
 * - `fizz/builder-<runtime>`: the builder pods' program (runtimes/builder), with this repo's
 *   runtimes/ as FIZZ_RUNTIMES_DIR and the Go toolchain's directory first on PATH;
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
  if (runtimeOfBuilderImage(image) !== undefined) return builderRun();
  if (runtime !== undefined) return { command: runtimeCommand(runtime) };
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

/** An interpreter: its FIZZ_<NAME> variable (as the poolkeeper reads it), else the bare name. */
function interpreter(variable: string, bin: string): string {
  return process.env[variable] || bin;
}

/** The same argv the poolkeeper's process backend runs the runtime with (runtime-commands.ts). */
export function runtimeCommand(runtime: RuntimeName): string[] {
  const at = (...p: string[]) => path.join(ROOT, "runtimes", ...p);
  switch (runtime) {
    case "node":
      return [process.execPath, at("node", "server.mjs")];
    case "python":
      return [interpreter("FIZZ_PYTHON", "python3"), at("python", "server.py")];
    case "php":
      return [interpreter("FIZZ_PHP", "php"), at("php", "server.php")];
    case "ruby":
      return [interpreter("FIZZ_RUBY", "ruby"), at("ruby", "server.rb")];
    case "go":
      return [at("go", ".build", "fizz-go-warm")];
    case "dotnet":
      return [
        interpreter("FIZZ_MONO", "mono"),
        "--debug",
        "-O=-inline",
        at("dotnet", ".build", "fizz-dotnet.exe"),
      ];
  }
}

/** The Go toolchain's bin directory, as the poolkeeper's builder finds it. */
function goBinDir(exists: (p: string) => boolean = existsSync): string | undefined {
  if (process.env.FIZZ_GO) return path.dirname(process.env.FIZZ_GO);
  return exists("/usr/local/go/bin/go") ? "/usr/local/go/bin" : undefined;
}

/**
 * A builder image: runtimes/builder/server.mjs, which runs runtimes/<lang>/build.sh of this repo
 * for Go and C#. The images carry their toolchains on PATH; here they are the host's (Go's own
 * directory first, as the official image has it), and GOPROXY is the host's when set.
 */
export function builderRun(): ImageRun {
  const hostPath = (process.env.PATH ?? "/usr/local/bin:/usr/bin:/bin").split(":");
  const go = goBinDir();
  const PATH = [...(go && !hostPath.includes(go) ? [go] : []), ...hostPath].join(":");
  return {
    command: [process.execPath, path.join(ROOT, "runtimes/builder/server.mjs")],
    env: {
      PATH,
      FIZZ_RUNTIMES_DIR: path.join(ROOT, "runtimes"),
      ...(process.env.GOPROXY ? { GOPROXY: process.env.GOPROXY } : {}),
    },
  };
}
