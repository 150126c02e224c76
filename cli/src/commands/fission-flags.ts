/**
 * Fission's flag names, so command lines copied from Fission's docs and scripts work: a flag
 * Fission spells differently is another name for ours, a Fission flag that means nothing here is
 * refused with the reason (never ignored: it would change what the command does), and the few
 * Fission flags that ask for what fizz always does are accepted. Our names stay the ones the
 * options list of --help shows; Fission's are listed once after it, marked as Fission's.
 */
import { isDeepStrictEqual } from "node:util";
import { Option, type Command } from "commander";
import { ApiError } from "../errors.js";
import { ALL_NAMESPACES } from "./fission-names.js";

/** Our option, by its long (or short) flag; `repeatable` when both spellings add up. */
type Target = string | { ours: string; repeatable: true };

interface Unsupported {
  why: string;
  /** Values that ask for what fizz does anyway (`--executortype poolmgr`), so are accepted. */
  except?: string[];
}

export interface FissionFlags {
  /** Fission's flags as commander spells them (`"--buildcmd <command>"`) → our option. */
  aliases?: Record<string, Target>;
  /** Fission's flags with no equivalent here → why (exit 2 when given). */
  unsupported?: Record<string, string | Unsupported>;
  /** Fission's flags that ask for what fizz always does (`--keepprefix`): accepted, no effect. */
  accepted?: string[];
  /**
   * Our options that must be given, checked once the aliases are applied (commander checks its
   * own requiredOption before, so an option with a Fission alias cannot be one).
   */
  required?: string[];
}

export interface IgnoreOptions {
  ignoreNotFound?: boolean;
}

/** Every delete: kubectl's --ignore-not-found, also under Fission's name --ignorenotfound. */
export function withIgnoreNotFound(cmd: Command): Command {
  return fissionFlags(
    cmd.option("--ignore-not-found", "succeed without a word if it does not exist (for scripts)"),
    { aliases: { "--ignorenotfound": "--ignore-not-found" } },
  );
}

/** For `.catch()` on a delete: with --ignore-not-found a NOT_FOUND answer is no error. */
export function unlessMissing(opts: IgnoreOptions): (err: unknown) => undefined {
  return (err) => {
    if (opts.ignoreNotFound && err instanceof ApiError && err.code === "NOT_FOUND") return;
    throw err;
  };
}

/** Every kind's `list` (alias `ls`), refusing Fission's -A. */
export function listCommand(parent: Command, what: string): Command {
  return fissionFlags(
    parent.command("list").alias("ls").description(`list the ${what} of the namespace`),
    { unsupported: ALL_NAMESPACES },
  );
}

interface Alias {
  option: Option;
  target: Option;
  repeatable: boolean;
}

/** Declares `flags` on `cmd` (after our options, which the aliases refer to) and checks them. */
export function fissionFlags(cmd: Command, flags: FissionFlags): Command {
  const aliases = Object.entries(flags.aliases ?? {}).map(([fission, to]): Alias => {
    const ours = typeof to === "string" ? to : to.ours;
    const target = findOption(cmd, ours);
    const parse = target.parseArg;
    // Raw values are kept and go through our option's parser when resolved, so a repeatable
    // option collects both spellings; parsing here too reports a bad value under its own name.
    const option = new Option(fission).hideHelp();
    if (option.required) {
      option.argParser((value: string, previous: string[] | undefined) => {
        parse?.(value, undefined);
        return [...(previous ?? []), value];
      });
    }
    cmd.addOption(option);
    return { option, target, repeatable: typeof to !== "string" };
  });
  const unsupported = Object.entries(flags.unsupported ?? {}).map(([fission, why]) => {
    const option = new Option(fission).hideHelp();
    cmd.addOption(option);
    return { option, ...(typeof why === "string" ? { why } : why) };
  });
  const accepted = (flags.accepted ?? []).map((fission) => new Option(fission).hideHelp());
  for (const option of accepted) cmd.addOption(option);
  const required = (flags.required ?? []).map((ours) => findOption(cmd, ours));

  cmd.hook("preAction", () => {
    for (const { option, why, except } of unsupported) {
      const value: unknown = cmd.getOptionValue(option.attributeName());
      if (value === undefined || (typeof value === "string" && except?.includes(value))) continue;
      const given = typeof value === "string" ? `${flagName(option)} ${value}` : flagName(option);
      cmd.error(`error: ${given} (a Fission flag) is not supported: ${why}`, {
        exitCode: 2,
        code: "fizz.unsupportedFissionFlag",
      });
    }
    const setBy = new Map<string, string>();
    for (const alias of aliases) resolve(cmd, alias, setBy);
    for (const option of required) {
      if (cmd.getOptionValue(option.attributeName()) === undefined) {
        cmd.error(`error: required option '${option.flags}' not specified`, {
          exitCode: 2,
          code: "commander.missingMandatoryOptionValue",
        });
      }
    }
  });

  const names = new Map<string, string[]>();
  for (const { option, target } of aliases) {
    const ours = flagName(target);
    names.set(ours, [...(names.get(ours) ?? []), shownFlags(option)]);
  }
  const listed = [
    ...[...names].map(([ours, theirs]) => `${theirs.join(", ")} (= ${ours})`),
    ...accepted.map((o) => `${shownFlags(o)} (no effect: what fizz always does)`),
  ];
  if (listed.length > 0) {
    cmd.addHelpText("after", `\n${helpLines(listed)}`);
  }
  return cmd;
}

/** Moves an alias's value onto our option; different values under two names are a usage error. */
function resolve(cmd: Command, { option, target, repeatable }: Alias, setBy: Map<string, string>) {
  const raw = cmd.getOptionValue(option.attributeName()) as string[] | true | undefined;
  if (raw === undefined) return;
  const key = target.attributeName();
  const parse = (value: string, previous: unknown): unknown =>
    target.parseArg ? target.parseArg(value, previous) : value;
  const given = cmd.getOptionValueSource(key) === "cli";
  let value: unknown;
  if (raw === true) {
    value = true; // a switch: nothing to differ
  } else if (repeatable) {
    value = given ? cmd.getOptionValue(key) : undefined;
    for (const v of raw) value = parse(v, value);
  } else {
    value = parse(raw.at(-1) as string, undefined);
    if (given && !isDeepStrictEqual(value, cmd.getOptionValue(key))) {
      const other = setBy.get(key);
      const ours = flagName(target);
      cmd.error(
        other === undefined
          ? `error: ${flagName(option)} is another name for ${ours}, and the values differ: give one of them`
          : `error: ${other} and ${flagName(option)} are both other names for ${ours}, and the values differ: give one of them`,
        { exitCode: 2, code: "fizz.conflictingOption" },
      );
    }
  }
  setBy.set(key, flagName(option));
  cmd.setOptionValueWithSource(key, value, "cli");
}

function findOption(cmd: Command, flag: string): Option {
  const option = cmd.options.find((o) => o.long === flag || o.short === flag);
  // A programming error: the alias table names an option the command does not have.
  if (!option) throw new Error(`fizz ${cmd.name()}: no option ${flag} for a Fission alias`);
  return option;
}

function flagName(option: Option): string {
  return option.long ?? option.short ?? option.flags;
}

/** `-c, --contenttype`: the flags without the value placeholder. */
function shownFlags(option: Option): string {
  return option.flags.replace(/\s*[<[].*$/, "");
}

/** `Fission's flag names: a, b, c.` in lines of at most 100 columns, broken between entries. */
function helpLines(entries: string[]): string {
  const lines: string[] = [];
  let line = "Fission's flag names:";
  entries.forEach((entry, i) => {
    const item = `${entry}${i === entries.length - 1 ? "." : ","}`;
    if (line.length + 1 + item.length > 100) {
      lines.push(line);
      line = `  ${item}`;
    } else line = `${line} ${item}`;
  });
  return [...lines, line].join("\n");
}
