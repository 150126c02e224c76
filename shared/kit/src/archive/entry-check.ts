import { ArchiveError } from "./errors.js";

/**
 * The entry's name as relative path segments under the root, or refused. Any `..` segment is
 * refused, even one that would stay inside after normalisation: no real archive needs it.
 * Returns [] for the root itself ("./").
 */
export function entrySegments(name: string, maxLength: number): string[] {
  if (name.length > maxLength) throw new ArchiveError(name, "name too long");
  if (name.length === 0 || name.includes("\0"))
    throw new ArchiveError(name, "empty or invalid name");
  if (name.includes("\\")) throw new ArchiveError(name, "backslash in path");
  if (name.startsWith("/") || /^[A-Za-z]:/.test(name))
    throw new ArchiveError(name, "absolute path");
  const segments = name.split("/").filter((s) => s !== "" && s !== ".");
  if (segments.includes("..")) throw new ArchiveError(name, "path escapes the archive root");
  return segments;
}

/**
 * A symlink's target may climb only with leading `..` segments, from the link's own directory
 * (a real directory: no entry is written through a symlink), and never above the root. Then
 * it descends; any link met on the way down obeys the same rule, so resolution stays inside.
 * A `..` after a name is refused, since that name may itself be a link (`s -> .`, `t -> s/..`).
 */
export function checkSymlinkTarget(name: string, linkDepth: number, target: string): void {
  if (target.length === 0 || target.includes("\0") || target.includes("\\")) {
    throw new ArchiveError(name, "symlink target escapes the archive root");
  }
  if (target.startsWith("/") || /^[A-Za-z]:/.test(target)) {
    throw new ArchiveError(name, "symlink target escapes the archive root");
  }
  const segments = target.split("/").filter((s) => s !== "" && s !== ".");
  let up = 0;
  while (up < segments.length && segments[up] === "..") up += 1;
  if (up > linkDepth || segments.slice(up).includes("..")) {
    throw new ArchiveError(name, "symlink target escapes the archive root");
  }
}

/** Keep read/execute bits; drop setuid, setgid, sticky and group/world write; owner can always read and write. */
export function safeFileMode(mode: number | undefined): number {
  return ((mode ?? 0o644) & 0o755) | 0o600;
}

export const DIR_MODE = 0o755;
