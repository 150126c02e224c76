import { FizzError } from "@fizz/events";

/** Why an archive was refused; stable, so callers and tests can match on it. */
export type ArchiveRule =
  | "path escapes the archive root"
  | "absolute path"
  | "backslash in path"
  | "empty or invalid name"
  | "name too long"
  | "symlink target escapes the archive root"
  | "hard link target is not an extracted file"
  | "device file, FIFO or socket"
  | "unsupported entry type"
  | "duplicate entry"
  | "path passes through a symlink or file"
  | "total size over the limit"
  | "too many files"
  | "compression ratio over the limit"
  | "unknown archive format"
  | "malformed archive";

/** ARCHIVE_UNSAFE (400): names the entry and the rule it broke. */
export class ArchiveError extends FizzError {
  readonly entry: string;
  readonly rule: ArchiveRule;

  constructor(entry: string, rule: ArchiveRule, cause?: unknown) {
    super("ARCHIVE_UNSAFE", `entry ${JSON.stringify(entry)}: ${rule}`, { cause });
    this.entry = entry;
    this.rule = rule;
  }
}
