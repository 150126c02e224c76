import { closeSync, readdirSync, readFileSync } from "node:fs";

/** O_CLOEXEC as /proc/<pid>/fdinfo's octal `flags` field shows it. */
const O_CLOEXEC = 0o2000000;

/**
 * Closes the descriptors this process inherited open across exec (no close-on-exec flag), other
 * than stdio and `keep`. Everything Node and libuv open here is close-on-exec, so a descriptor
 * without the flag came from whoever started the poolkeeper (a terminal's, a supervisor's, a CI
 * harness's pipe), and `child_process.spawn` hands such descriptors to every process it starts:
 * prlimit and setpriv close nothing, so each instance of a taken start (and each build step) would
 * hold them as its tenant's own. The spawner closes them in its children; this covers the rest.
 * Returns the descriptors closed. Where /proc is not there (not Linux), does nothing.
 */
export function closeInheritedDescriptors(keep: ReadonlySet<number> = new Set()): number[] {
  let fds: string[];
  try {
    fds = readdirSync("/proc/self/fd");
  } catch {
    return [];
  }
  const closed: number[] = [];
  for (const name of fds) {
    const fd = Number(name);
    if (!Number.isInteger(fd) || fd <= 2 || keep.has(fd)) continue;
    let flags: number;
    try {
      const m = /^flags:\s+([0-7]+)$/m.exec(readFileSync(`/proc/self/fdinfo/${fd}`, "latin1"));
      if (!m?.[1]) continue;
      flags = parseInt(m[1], 8);
    } catch {
      continue; // gone meanwhile: the listing's own directory descriptor
    }
    if (flags & O_CLOEXEC) continue;
    try {
      closeSync(fd);
      closed.push(fd);
    } catch {
      // already closed
    }
  }
  return closed;
}
