/**
 * What `fizz pkg` and `fizz fn --src/--deploy` share: checking the archive flags, uploading, the
 * spec fields an upload sets, and how a package's build is described in one line.
 */
import type { Command } from "commander";
import { uploadPath } from "./archive-upload.js";
import type { Awaited } from "./build-wait.js";
import type { Context } from "./context.js";
import { formatBytes } from "./output.js";
import type { PackageObject } from "./types.js";

export interface ArchiveFlags {
  src?: string;
  deploy?: string;
  /** "" on update: remove the build command (the environment's default build applies). */
  buildCmd?: string;
}

/** The spec fields a package write sends; null unsets on update. */
export type PackagePatch = Record<string, unknown>;

/**
 * Usage errors (exit 2) before anything is read or sent: --src and --deploy exclude each other,
 * and --build-cmd only means something with a source to build.
 */
export function checkArchiveFlags(
  cmd: Command,
  flags: ArchiveFlags,
  opts: { required: boolean; buildCmdAlone: boolean },
): void {
  if (flags.src !== undefined && flags.deploy !== undefined) {
    cmd.error(
      "error: --src and --deploy exclude each other: give a source to build or a deployment",
      {
        exitCode: 2,
      },
    );
  }
  if (opts.required && flags.src === undefined && flags.deploy === undefined) {
    cmd.error(
      "error: give --src <dir|archive|file> (built) or --deploy <dir|archive> (used as is)",
      {
        exitCode: 2,
      },
    );
  }
  if (flags.buildCmd !== undefined && flags.deploy !== undefined) {
    cmd.error("error: --build-cmd needs --src: a deployment (--deploy) is not built", {
      exitCode: 2,
    });
  }
  if (flags.buildCmd !== undefined && flags.src === undefined && !opts.buildCmdAlone) {
    cmd.error("error: --build-cmd needs --src: it is run in the source directory", { exitCode: 2 });
  }
}

/**
 * Uploads the archive the flags name and returns the spec fields to write and what to wait for.
 * `replacing` (update) also unsets the other kind of archive, so a package can switch between
 * being built and being deployed as is.
 */
export async function uploadArchiveFlags(
  ctx: Context,
  flags: ArchiveFlags,
  replacing: boolean,
): Promise<{ spec: PackagePatch; awaited?: Awaited }> {
  const spec: PackagePatch = {};
  let awaited: Awaited | undefined;
  if (flags.src !== undefined) {
    const source = await uploadPath(ctx, flags.src, "--src", "source");
    spec.source = source;
    if (replacing) spec.deployment = null;
    awaited = { source: source.digest };
  } else if (flags.deploy !== undefined) {
    const deployment = await uploadPath(ctx, flags.deploy, "--deploy", "deployment");
    spec.deployment = deployment;
    if (replacing) {
      spec.source = null;
      spec.buildCommand = null;
    }
    awaited = { deployment: deployment.digest };
  }
  if (flags.buildCmd !== undefined) {
    spec.buildCommand = flags.buildCmd === "" ? null : flags.buildCmd;
  }
  return { spec, ...(awaited ? { awaited } : {}) };
}

/** `build succeeded: deployment sha256:0123456789ab (1.2 MiB)`, or where the build stands. */
export function describeBuild(pkg: PackageObject): string {
  const status = pkg.status;
  if (!status) return "build pending";
  const deployment = status.deployment
    ? `deployment ${shortDigest(status.deployment.digest)} (${formatBytes(status.deployment.size)})`
    : "";
  if (status.buildState === "succeeded") {
    return pkg.spec.source ? `build succeeded: ${deployment}` : deployment;
  }
  if (status.buildState === "failed") return `build failed: ${status.message ?? "no reason given"}`;
  return `build ${status.buildState}`;
}

/** Enough of a digest to tell archives apart in a line; `pkg info` and `-o json` show it whole. */
export function shortDigest(digest: string): string {
  return digest.slice(0, "sha256:".length + 12);
}
