import { closeSync, lstatSync, openSync, readdirSync, type Stats } from "node:fs";
import { at, NOFOLLOW_DIR } from "./remove-tree";
import { ipcObjectsWhere } from "./uid-ipc";
import { BATCH, eachUidFileDir, ENTRIES, UID_FILE_DIRS, type UidFilesOptions } from "./uid-files";

/**
 * The uids in [base, base + count) that own something in `dirs` (as removeUidFiles looks: the
 * top of each, and world-writable directories of other owners `depth` levels below) or a SysV
 * IPC object. For a poolkeeper's start: a dead one's instances left these, and their uids must
 * be cleaned before they are handed out (their claims lapsed with it). Looks at ENTRIES entries
 * at most (then returns what it found: the rest is left to each uid's clean-up at its end).
 */
export async function uidsWithFiles(
  base: number,
  count: number,
  opts: Pick<UidFilesOptions, "dirs" | "depth" | "entries"> = {},
): Promise<Set<number>> {
  const inRange = (uid: number) => uid >= base && uid < base + count;
  const found = ipcObjectsWhere(inRange).uids;
  let budget = opts.entries ?? ENTRIES;
  let calls = 0;
  const look = async (fd: number, depth: number): Promise<void> => {
    let names: string[];
    try {
      names = readdirSync(`/proc/self/fd/${fd}`);
    } catch {
      return;
    }
    for (const name of names) {
      if (budget-- <= 0) return;
      if (++calls % BATCH === 0) await new Promise((r) => setImmediate(r));
      let st: Stats;
      try {
        st = lstatSync(at(fd, name));
      } catch {
        continue;
      }
      if (inRange(st.uid)) found.add(st.uid);
      else if (st.isDirectory() && (st.mode & 0o002) !== 0 && depth > 0) {
        let child: number;
        try {
          child = openSync(at(fd, name), NOFOLLOW_DIR);
        } catch {
          continue;
        }
        try {
          await look(child, depth - 1);
        } finally {
          closeSync(child);
        }
      }
    }
  };
  await eachUidFileDir(opts.dirs ?? UID_FILE_DIRS, (fd) => look(fd, opts.depth ?? 3));
  return found;
}
