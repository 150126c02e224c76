/**
 * What is wrong with a spec, located the way an editor needs it: file, line, the object and the
 * field. Loading collects every problem instead of stopping at the first, so one run of
 * `fizz spec validate` lists all there is to fix.
 */
import { CliError } from "../errors.js";

export interface SpecProblem {
  /** The file as the user can open it: the `-f` directory joined with the file's name. */
  file: string;
  /** 1-based; absent when the problem belongs to no line (a missing DeploymentConfig). */
  line?: number;
  /** `Function`, when the document got far enough to have one. */
  kind?: string;
  name?: string;
  /** `spec.minInstances`, `metadata.name`... */
  field?: string;
  message: string;
  /** A stable code for a problem found by planning (compiled-switch.ts), which scripts can match. */
  code?: string;
}

/** `specs/functions.yaml:12: Function guestbook-get: spec.minInstances: must be at most 1000` */
export function formatProblem(p: SpecProblem): string {
  const where = p.line === undefined ? p.file : `${p.file}:${p.line}`;
  const what =
    p.kind === undefined ? "" : p.name === undefined ? ` ${p.kind}:` : ` ${p.kind} ${p.name}:`;
  const field = p.field ? ` ${p.field}:` : "";
  return `${where}:${what}${field} ${p.message}${p.code ? ` (${p.code})` : ""}`;
}

/** The spec cannot be applied; the problems have been printed (or go into -o json). */
export class SpecInvalidError extends CliError {
  override name = "SpecInvalidError";

  constructor(
    readonly problems: SpecProblem[],
    what = "nothing was applied",
  ) {
    super(`the spec has ${problems.length} problem${problems.length === 1 ? "" : "s"}; ${what}`);
  }
}
