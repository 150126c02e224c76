/**
 * `fizz pkg ...`: packages are a function's code as an archive: a source the platform builds
 * (npm / pip / a build command) or a deployment used as is. The registry owns the build state.
 */
import { randomBytes } from "node:crypto";
import { createWriteStream } from "node:fs";
import { rename, rm, stat } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import type { Command } from "commander";
import { DEFAULT_WAIT_SECONDS, nsFlag, waitForPackage, type Awaited } from "../build-wait.js";
import {
  confirm,
  outputFile,
  outputIsFile,
  type Context,
  type ContextFactory,
} from "../context.js";
import { CliError } from "../errors.js";
import { describeNetworkError } from "../http.js";
import { parseSeconds } from "../options.js";
import { formatBytes, printJson } from "../output.js";
import {
  checkArchiveFlags,
  describeBuild,
  uploadArchiveFlags,
  type ArchiveFlags,
} from "../package-ops.js";
import type { PackageObject } from "../types.js";
import { deleteAction } from "./delete-action.js";
import { fissionFlags, listCommand, withIgnoreNotFound } from "./fission-flags.js";
import { PKG_ALIASES, PKG_LIST_FILTER, PKG_UNSUPPORTED, SPEC_FLAGS } from "./fission-names.js";
import { printList, renderPackage } from "./pkg-view.js";

interface NameOptions {
  name: string;
}

export interface WaitOptions {
  wait: boolean;
  waitTimeout: number;
}

interface WriteOptions extends NameOptions, ArchiveFlags, WaitOptions {
  env?: string;
}

export function registerPkgCommands(program: Command, context: ContextFactory): void {
  const pkg = program
    .command("pkg")
    .alias("package")
    .description("manage packages: a function's code as an archive, built by the platform or as is")
    .addHelpText(
      "after",
      `
Examples:
  fizz pkg create --name shop --env python --src ./shop          # pip install -r requirements.txt
  fizz pkg create --name web --env node --src ./web              # npm ci / npm install
  fizz pkg create --name tool --env python --src ./tool --build-cmd ./build.sh
  fizz pkg create --name prebuilt --env node --deploy web.zip    # used as is, no build
  fizz pkg info --name shop
  fizz pkg getdeploy --name shop -o shop-deploy.tar.gz`,
    );

  const create = withWaitOptions(
    withArchiveOptions(
      pkg
        .command("create")
        .description("upload a source (then build it) or a deployment, and create the package")
        .requiredOption("--name <name>", "package name")
        .requiredOption("--env <environment>", "environment whose builder and runtime it is for"),
    ),
  );
  fissionFlags(create, {
    aliases: PKG_ALIASES,
    unsupported: { ...PKG_UNSUPPORTED, ...SPEC_FLAGS },
  }).action(async (opts: WriteOptions, cmd: Command) => {
    checkArchiveFlags(cmd, opts, { required: true, buildCmdAlone: false });
    const ctx = context(cmd);
    const { spec, awaited } = await uploadArchiveFlags(ctx, opts, false);
    const created = await ctx.registry.create<PackageObject>("packages", {
      name: opts.name,
      spec: { environment: opts.env, ...spec },
    });
    await finish(ctx, opts, created, awaited, "created");
  });

  pkg
    .command("info")
    .alias("get")
    .description("show a package: its archives, build state and build log")
    .requiredOption("--name <name>", "package name")
    .action(async (opts: NameOptions, cmd: Command) => {
      const ctx = context(cmd);
      const found = await ctx.registry.get<PackageObject>("packages", opts.name);
      if (ctx.output === "json") printJson(ctx.stdout, found);
      else ctx.stdout.write(renderPackage(found, ctx.now()));
    });

  fissionFlags(listCommand(pkg, "packages"), {
    unsupported: { "--orphan": PKG_LIST_FILTER, "--status <state>": PKG_LIST_FILTER },
  }).action(async (_opts: unknown, cmd: Command) => {
    const ctx = context(cmd);
    const list = await ctx.registry.list<PackageObject>("packages");
    printList(ctx, list.items, list);
  });

  const update = withWaitOptions(
    withArchiveOptions(
      pkg
        .command("update")
        .description("upload a new source or deployment; functions using it move to the new build")
        .requiredOption("--name <name>", "package name")
        .option("--env <environment>", "environment (its functions must use the same)"),
    ),
  );
  fissionFlags(update, {
    aliases: PKG_ALIASES,
    unsupported: PKG_UNSUPPORTED,
    // Fission updates a package functions use only when forced; fizz always does, and moves
    // those functions to the new build.
    accepted: ["-f, --force"],
  }).action(async (opts: WriteOptions, cmd: Command) => {
    checkArchiveFlags(cmd, opts, { required: false, buildCmdAlone: true });
    if (
      opts.src === undefined &&
      opts.deploy === undefined &&
      opts.buildCmd === undefined &&
      opts.env === undefined
    ) {
      cmd.error("error: nothing to update: give --src, --deploy, --build-cmd or --env", {
        exitCode: 2,
      });
    }
    const ctx = context(cmd);
    const before = await ctx.registry.get<PackageObject>("packages", opts.name);
    const { spec, awaited } = await uploadArchiveFlags(ctx, opts, true);
    if (opts.env !== undefined) spec.environment = opts.env;
    const updated = await ctx.registry.update<PackageObject>("packages", opts.name, { spec });
    // Only a new build command (same source): the registry builds again; wait for that build.
    const rebuilt =
      awaited === undefined && opts.buildCmd !== undefined && before.spec.source
        ? { rebuildOf: updated.status, source: before.spec.source.digest }
        : awaited;
    await finish(ctx, opts, updated, rebuilt, `updated (revision ${updated.metadata.revision})`);
  });

  withWaitOptions(
    pkg
      .command("rebuild")
      .description(
        "build the package's source again (e.g. after its environment's builder changed)",
      )
      .requiredOption("--name <name>", "package name"),
  ).action(async (opts: NameOptions & WaitOptions, cmd: Command) => {
    const ctx = context(cmd);
    const asked = await ctx.registry.rebuild(opts.name);
    const source = asked.spec.source?.digest;
    const awaited = source ? { rebuildOf: asked.status, source } : undefined;
    await finish(ctx, opts, asked, awaited, "rebuild started");
  });

  fissionFlags(
    withIgnoreNotFound(
      pkg
        .command("delete")
        .alias("rm")
        .description("delete a package (refused while a function uses it)")
        .requiredOption("--name <name>", "package name"),
    ),
    {
      unsupported: {
        "-f, --force": "fizz never deletes a package its functions use",
        "--orphan": "delete packages one at a time with --name (fizz pkg list shows them)",
      },
    },
  ).action(
    deleteAction(
      context,
      "packages",
      "package",
      "Delete the functions named above, or move them to another package, first.",
    ),
  );

  for (const [name, which, what] of [
    ["getsrc", "source", "source archive"],
    ["getdeploy", "deployment", "deployment archive (the build's output)"],
  ] as const) {
    outputIsFile(
      pkg
        .command(name)
        .description(`download the package's ${what} as tar.gz to the file given with -o`)
        .requiredOption("--name <name>", "package name"),
    ).action(async (opts: NameOptions, cmd: Command) => {
      const file = outputFile(cmd);
      if (file === undefined || file === "") {
        cmd.error(
          `error: give the file to write with -o <file>, e.g. -o ${opts.name}-${which}.tar.gz`,
          {
            exitCode: 2,
          },
        );
      }
      const ctx = context(cmd);
      const bytes = await download(ctx, opts.name, which, file);
      ctx.stdout.write(
        `${which} of package "${opts.name}" written to ${file} (${formatBytes(bytes)})\n`,
      );
    });
  }
}

function withArchiveOptions(cmd: Command): Command {
  return cmd
    .option(
      "--src <path>",
      "source to build: a directory, an archive (.zip, .tar, .tar.gz) or one file",
    )
    .option("--deploy <path>", "deployment used as is: a directory or an archive (no build)")
    .option(
      "--build-cmd <command>",
      'build command run in the source directory instead of the default build (with --src), e.g. "./build.sh"',
    );
}

/** --no-wait and --wait-timeout, for every command that starts a build. */
export function withWaitOptions(cmd: Command): Command {
  return cmd
    .option("--no-wait", "return once the package is written, without waiting for the build")
    .option(
      "--wait-timeout <seconds>",
      "how long to wait for the build",
      parseSeconds,
      DEFAULT_WAIT_SECONDS,
    );
}

/** After a write: wait for the build (unless --no-wait), then say how it went. */
async function finish(
  ctx: Context,
  opts: NameOptions & WaitOptions,
  written: PackageObject,
  awaited: Awaited | undefined,
  verb: string,
): Promise<void> {
  const result =
    awaited && opts.wait
      ? await waitForPackage(ctx, opts.name, awaited, opts.waitTimeout)
      : written;
  const follow =
    awaited && !opts.wait
      ? ` (follow it with: fizz pkg info --name ${opts.name}${nsFlag(ctx)})`
      : "";
  confirm(ctx, result, `package "${opts.name}" ${verb}: ${describeBuild(result)}${follow}`);
}

/**
 * Streams the archive into a temporary file next to `file`, renamed over it only when complete:
 * a broken download never leaves a truncated archive under the name asked for.
 */
async function download(
  ctx: Context,
  name: string,
  which: "source" | "deployment",
  file: string,
): Promise<number> {
  const existing = await stat(file).catch(() => undefined);
  if (existing?.isDirectory()) throw new CliError(`-o "${file}" is a directory; give a file name`);
  const body = await ctx.registry.downloadArchive(name, which);
  const tmp = join(dirname(file), `.${basename(file)}.${randomBytes(6).toString("hex")}.part`);
  let bytes = 0;
  try {
    const source = Readable.fromWeb(body);
    source.on("data", (chunk: Buffer) => (bytes += chunk.length));
    await pipeline(source, createWriteStream(tmp, { flags: "wx", mode: 0o644 }));
    await rename(tmp, file);
  } catch (err) {
    await rm(tmp, { force: true });
    const code = (err as NodeJS.ErrnoException).code;
    if (code === "ENOENT" || code === "EACCES" || code === "EEXIST" || code === "ENOTDIR") {
      throw new CliError(`cannot write -o "${file}": ${(err as Error).message}`);
    }
    throw describeNetworkError(err, { label: "registry", baseUrl: ctx.registryUrl });
  }
  return bytes;
}
