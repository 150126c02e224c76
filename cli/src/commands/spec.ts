/**
 * `fizz spec init|validate|apply|destroy`: an application as YAML files in git. The format is
 * docs/cli.md's "Declarative specs"; this file wires the commands to cli/src/spec/.
 */
import { mkdir, writeFile } from "node:fs/promises";
import { basename, join } from "node:path";
import { InvalidArgumentError, type Command } from "commander";
import { isDnsLabel } from "@fizz/events";
import { DEFAULT_WAIT_SECONDS } from "../build-wait.js";
import type { Context, ContextFactory } from "../context.js";
import { CliError } from "../errors.js";
import { collect, parseInteger, parseSeconds } from "../options.js";
import { apply, destroy, validate, type ApplyFlags, type Env } from "../spec/actions.js";
import { DEFAULT_PARALLEL, MAX_PARALLEL } from "../spec/apply-order.js";
import { DEPLOYMENT_CONFIG } from "../spec/documents.js";
import { printResultJson } from "../spec/report.js";

interface DirOptions {
  specdir?: string[];
}

type ApplyOptions = DirOptions & ApplyFlags;

const CONFIG_FILE = "fizz-deployment-config.yaml";

export function registerSpecCommands(program: Command, context: ContextFactory, env: Env): void {
  const spec = program
    .command("spec")
    .alias("specs")
    .description("declarative specs: an application's objects as YAML files, applied together")
    .addHelpText(
      "after",
      `
Examples:
  fizz spec init --name guestbook          # specs/fizz-deployment-config.yaml
  fizz spec validate -f specs
  fizz spec apply -f specs --dry-run       # what would change; nothing is sent
  fizz spec apply -f specs --prune         # also delete objects dropped from the files
  fizz spec apply -f specs --parallel 1    # one write at a time
  fizz spec destroy -f specs`,
    );
  const withDirs = (cmd: Command) =>
    cmd.option(
      "-f, --specdir <dir>",
      "directory of *.yaml/*.yml spec files; repeatable (default: specs)",
      collect,
    );

  spec
    .command("init")
    .description(`write <dir>/${CONFIG_FILE}: the spec's name, which labels everything it applies`)
    .option("--name <name>", "the spec's name (default: this directory's name)")
    .option("--dir <dir>", "where the spec files live", "specs")
    .action(async (opts: { name?: string; dir: string }, cmd: Command) => {
      const name = opts.name ?? labelFrom(basename(process.cwd()));
      if (!isDnsLabel(name))
        cmd.error(
          `error: --name "${name}" must be a DNS label (lower-case letters, digits and '-', at most 63)`,
          { exitCode: 2 },
        );
      const ctx = context(cmd);
      await initSpec(ctx, opts.dir, name);
    });

  withDirs(spec.command("validate"))
    .description(
      "check spec files without changing anything (and, if reachable, against the registry)",
    )
    .action(async (opts: DirOptions, cmd: Command) => {
      await validate(context(cmd), dirsOf(opts), env);
    });

  withDirs(spec.command("apply"))
    .description(
      "create, update (and with --prune delete) objects so the registry matches the spec",
    )
    .option("--dry-run", "print the plan; upload and change nothing")
    .option("--prune", "delete objects labelled with this spec that its files no longer have")
    .option(
      "--wait-timeout <seconds>",
      "how long to wait for each package's build",
      parseSeconds,
      DEFAULT_WAIT_SECONDS,
    )
    .option(...parallelOption("writes"))
    .action(async (opts: ApplyOptions, cmd: Command) => {
      await apply(context(cmd), dirsOf(opts), opts, env);
    });

  // The same executor as apply, so the same knob: a registry that cannot take 16 deletions at
  // once would otherwise leave destroy no way to go slower.
  withDirs(spec.command("destroy"))
    .description("delete every object labelled with this spec's name")
    .option("--dry-run", "print what would be deleted; delete nothing")
    .option(...parallelOption("deletions"))
    .action(async (opts: DirOptions & { dryRun?: boolean; parallel: number }, cmd: Command) => {
      await destroy(context(cmd), dirsOf(opts), env, opts.dryRun === true, opts.parallel);
    });
}

function parallelOption(what: string) {
  return [
    "--parallel <n>",
    `${what} sent at once, 1-${MAX_PARALLEL}; 1: one at a time`,
    parseParallel,
    DEFAULT_PARALLEL,
  ] as const;
}

/** `--parallel`: a whole number in range, so a typo is a usage error before anything is sent. */
export function parseParallel(value: string): number {
  const n = parseInteger(value);
  if (n < 1 || n > MAX_PARALLEL)
    throw new InvalidArgumentError(`must be between 1 and ${MAX_PARALLEL}.`);
  return n;
}

function dirsOf(opts: DirOptions): string[] {
  return opts.specdir && opts.specdir.length > 0 ? opts.specdir : ["specs"];
}

/** `My App_2` → `my-app-2`: a directory's name made into a DNS label. */
export function labelFrom(text: string): string {
  const label = text
    .toLowerCase()
    .replace(/[^a-z0-9-]+/g, "-")
    .replace(/-+/g, "-")
    .replace(/^-+/, "")
    .slice(0, 63)
    .replace(/-+$/, "");
  return label === "" ? "app" : label;
}

async function initSpec(ctx: Context, dir: string, name: string): Promise<void> {
  const file = join(dir, CONFIG_FILE);
  const text = `# The spec's name. "fizz spec apply" labels every object it writes fizz.dev/spec=${name};
# --prune and "fizz spec destroy" only ever delete objects carrying that label.
apiVersion: fizz.dev/v1
kind: ${DEPLOYMENT_CONFIG}
metadata:
  name: ${name}
spec:
  # Environment variables the spec files may use as \${NAME} or \${NAME:-default}, by name
  # (e.g. [GUESTBOOK_REDIS_URL]). No other variable is read, and FIZZ_* never are.
  variables: []
`;
  await mkdir(dir, { recursive: true });
  try {
    // "wx": never overwrite a spec's identity, even one created a moment ago by someone else.
    await writeFile(file, text, { flag: "wx" });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "EEXIST")
      throw new CliError(`${file} already exists; remove it to start a new spec`);
    throw new CliError(`cannot write ${file}: ${(err as Error).message}`);
  }
  if (ctx.output === "json") printResultJson(ctx, { spec: name, file });
  else ctx.stdout.write(`wrote ${file}: spec "${name}"\n`);
}
