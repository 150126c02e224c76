import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import {
  closeSync,
  constants,
  existsSync,
  fstatSync,
  lstatSync,
  openSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmdirSync,
  unlinkSync,
  type Stats,
} from "node:fs";
import { INSTANCE_PATH } from "./instance-launch";

// What an instance uid left outside its instance directory, removed before the uid is handed to
// another function (maybe another tenant's): files in world-writable places and SysV IPC objects
// (docs/security.md). A leaf like uid-cleanup.ts, which calls it: importing leftovers.ts (its
// removeTreeNoFollow) from here would close an import cycle (leftovers -> uid-cleanup -> here),
// so the same descriptor walk is written out below.

/** The world-writable places a uid can write to; /var/lock is usually a link to /run/lock. */
export const UID_FILE_DIRS = [
  "/tmp",
  "/var/tmp",
  "/dev/shm",
  "/run/lock",
  "/var/lock",
  "/dev/mqueue",
];

export interface UidFilesOptions {
  /** Where to look (default UID_FILE_DIRS); missing ones are skipped. */
  dirs?: string[];
  /** Levels of world-writable directories of other owners to look into below each (default 3). */
  depth?: number;
  /** Others' entries looked at before the scan is paced (default ENTRIES; see there). */
  entries?: number;
  /** Also SysV IPC objects (default true). */
  ipc?: boolean;
}

/** What removeUidFiles did: `failed` names what is still there (then the uid must not be reused). */
export interface UidFiles {
  removed: number;
  failed: string[];
}

/**
 * A clean-up runs at every instance's end, beside cold starts: a /tmp that another instance
 * filled must not hold the loop or the CPU for long. Only entries of other owners spend it: what
 * the uid itself made is always removed, however much (its own work, bounded by what it did).
 * Past it the scan neither stops (failing open would let a tenant hide a file behind enough
 * others) nor fails (the uid would be quarantined for good, and a LIVE tenant keeping that many
 * entries in /tmp would drain the pool, one ended instance at a time): it goes on, one such
 * clean-up at a time (`paced`), each further ENTRIES followed by a pause PACE times as long as
 * they took. The uid is only given back later, and a filled /tmp costs at most ~1/(PACE+1) of a
 * core beyond every clean-up's first ENTRIES.
 */
const ENTRIES = 100_000;
const PACE = 4;
/** The clean-ups past their first ENTRIES, one after another (see ENTRIES). */
let paced: Promise<void> = Promise.resolve();
/** Synchronous fs calls between two turns of the event loop (as uid-cleanup.ts's SCAN_BATCH). */
const BATCH = 64;
/**
 * Open directories at most while removing one tree (one per level). A directory deeper is moved
 * up under the tree's top and emptied by its next pass: failing there would quarantine the uid,
 * and one mkdir loop per instance would drain the pool. Few: clean-ups of instances ending
 * together run side by side, and 1024 each reached the poolkeeper's descriptor limit (EMFILE
 * then failed other uids' clean-ups, accepts, spawns). A deeper tree costs a pass per 64 levels.
 */
const MAX_DEPTH = 64;
const NOFOLLOW_DIR = constants.O_RDONLY | constants.O_DIRECTORY | constants.O_NOFOLLOW;

/**
 * Removes everything `uid` owns (lstat: the entry itself, never a link's target) in `dirs` and in
 * world-writable directories of other owners below them, and its SysV IPC objects.
 *
 * Call only once no process of `uid` runs (killUid said left 0): a live one could create entries
 * behind the scan, or swap its own entries for links while they are removed. Other live uids
 * cannot redirect the removal: every directory is walked through a descriptor opened with
 * O_NOFOLLOW (names resolved as /proc/self/fd/<fd>/<name>, as leftovers.ts removeAt), and a
 * directory of the uid is checked to still be its own through that descriptor before it is emptied.
 */
export async function removeUidFiles(uid: number, opts: UidFilesOptions = {}): Promise<UidFiles> {
  const walk = new Walk(uid, opts.entries ?? ENTRIES);
  const seen = new Set<string>();
  try {
    for (const dir of opts.dirs ?? UID_FILE_DIRS) {
      let fd: number;
      try {
        // The candidate itself may be a link (/var/lock): a root-owned system path, followed.
        fd = openSync(dir, constants.O_RDONLY | constants.O_DIRECTORY);
      } catch {
        continue; // not on this host
      }
      try {
        const st = fstatSync(fd);
        const key = `${st.dev}:${st.ino}`;
        if (seen.has(key)) continue;
        seen.add(key);
        await walk.scan(fd, dir, opts.depth ?? 3);
      } finally {
        closeSync(fd);
      }
    }
  } finally {
    walk.done();
  }
  const out = walk.result();
  if (opts.ipc ?? true) {
    const ipc = await removeIpc(uid);
    out.removed += ipc.removed;
    out.failed.push(...ipc.failed);
  }
  return out;
}

function at(fd: number, name: string): string {
  return `/proc/self/fd/${fd}/${name}`;
}

class Walk {
  private removed = 0;
  private readonly failed: string[] = [];
  /** Directories moved up under their tree's top (MAX_DEPTH): the top needs another pass. */
  private movedUp = 0;
  private calls = 0;
  /** Others' entries left before the next pause (ENTRIES). */
  private left: number;
  private chunkStart = performance.now();
  /** Lets the next clean-up past its first chunk go on (set once this one is past its own). */
  private release: (() => void) | undefined;
  constructor(
    private readonly uid: number,
    private readonly chunk: number,
  ) {
    this.left = chunk;
  }

  /** Ends the walk: the next paced clean-up may go on. */
  done(): void {
    this.release?.();
  }

  result(): UidFiles {
    return { removed: this.removed, failed: [...this.failed] };
  }

  /** Looks at every entry of the open directory `fd` (shown as `shown` in failures). */
  async scan(fd: number, shown: string, depth: number): Promise<void> {
    for (const name of await this.list(fd, shown)) {
      const st = await this.lstat(fd, name, `${shown}/${name}`);
      if (!st) continue;
      if (st.uid === this.uid) {
        this.left++; // the uid's own: looking at it spends nothing (ENTRIES)
        await this.remove(fd, name, st, `${shown}/${name}`, 0);
      } else if (st.isDirectory() && (st.mode & 0o002) !== 0 && depth > 0) {
        // Another owner's world-writable directory (sticky or not): the uid could write there.
        // Its owner may have swapped it for a link or file meanwhile (ELOOP, ENOTDIR): what it
        // moved away is its to hide, not a reason to quarantine another uid.
        const child = this.open(fd, name, `${shown}/${name}`, ["ELOOP", "ENOTDIR"]);
        if (child === undefined) continue;
        try {
          await this.scan(child, `${shown}/${name}`, depth - 1);
        } finally {
          closeSync(child);
        }
      }
    }
  }

  /**
   * Removes `name`, the uid's (as `st` says), and what is under it, whoever owns that. `top`: the
   * descriptor of the tree's top directory (depth 0), where a too deep directory is moved.
   */
  private async remove(
    fd: number,
    name: string,
    st: Stats,
    shown: string,
    depth: number,
    top?: number,
  ): Promise<void> {
    if (!st.isDirectory()) {
      await this.tick(true);
      this.attempt(shown, () => unlinkSync(at(fd, name)));
      return;
    }
    if (depth >= MAX_DEPTH && top !== undefined) {
      // rename follows no last component (a link swapped in is moved itself, not its target),
      // and stays inside the tree: the top's next pass lists it again, MAX_DEPTH levels less deep.
      const moved = `.fizz-deep-${randomBytes(8).toString("hex")}`;
      // Counted only once moved: a rename that fails (a failure, named) must not loop the top.
      this.attempt(
        shown,
        () => {
          renameSync(at(fd, name), at(top, moved));
          this.movedUp++;
        },
        false,
      );
      return;
    }
    const child = this.open(fd, name, shown);
    if (child === undefined) return;
    try {
      // The name may now be another directory (the parent's owner can rename in a sticky
      // directory): only one still the uid's is emptied (its contents are the uid's to decide);
      // the uid's own moved away meanwhile, so it is not known removed.
      if (depth === 0 && fstatSync(child).uid !== this.uid) {
        this.failed.push(`${shown}: replaced while being removed`);
        return;
      }
      for (;;) {
        const moved = this.movedUp;
        for (const inner of await this.list(child, shown, true)) {
          const ist = await this.lstat(child, inner, `${shown}/${inner}`, true);
          if (ist)
            await this.remove(child, inner, ist, `${shown}/${inner}`, depth + 1, top ?? child);
        }
        if (depth > 0 || this.movedUp === moved) break; // at the top: again while moves came
      }
    } finally {
      closeSync(child);
    }
    this.attempt(shown, () => rmdirSync(at(fd, name)));
  }

  private async list(fd: number, shown: string, own = false): Promise<string[]> {
    await this.tick(own);
    let names: string[] = [];
    this.attempt(shown, () => (names = readdirSync(`/proc/self/fd/${fd}`)), false);
    return names;
  }

  private async lstat(
    fd: number,
    name: string,
    shown: string,
    own = false,
  ): Promise<Stats | undefined> {
    await this.tick(own);
    let st: Stats | undefined;
    this.attempt(shown, () => (st = lstatSync(at(fd, name))), false);
    return st;
  }

  private open(fd: number, name: string, shown: string, ignore: string[] = []): number | undefined {
    let child: number | undefined;
    this.attempt(shown, () => (child = openSync(at(fd, name), NOFOLLOW_DIR)), false, ignore);
    return child;
  }

  /** Runs one fs call: gone meanwhile (ENOENT) is no failure; any other error is. */
  private attempt(shown: string, op: () => void, counts = true, ignore: string[] = []): void {
    try {
      op();
      if (counts) this.removed++;
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code !== "ENOENT" && !ignore.includes(code ?? ""))
        this.failed.push(`${shown}: ${code ?? String(err)}`);
    }
  }

  /**
   * Spends one entry of the chunk (not for the uid's own tree: `own`), pausing once it is spent
   * (ENTRIES), and yields every BATCH calls.
   */
  private async tick(own = false): Promise<void> {
    if (!own && --this.left < 0) await this.pause();
    if (++this.calls % BATCH === 0) await new Promise((r) => setImmediate(r));
  }

  /** Past a chunk: first waits for its turn (one paced clean-up at a time), later sleeps. */
  private async pause(): Promise<void> {
    if (this.release === undefined) {
      const before = paced;
      const mine = new Promise<void>((r) => (this.release = r));
      paced = before.then(() => mine);
      await before;
    } else {
      const took = performance.now() - this.chunkStart;
      await new Promise((r) => setTimeout(r, took * PACE));
    }
    this.left = this.chunk - 1;
    this.chunkStart = performance.now();
  }
}

/** /proc/sysvipc file, ipcrm flag, and the name of its id column. */
const IPC_KINDS = [
  { file: "shm", flag: "-m", id: "shmid" },
  { file: "sem", flag: "-s", id: "semid" },
  { file: "msg", flag: "-q", id: "msqid" },
] as const;

/** The uid's SysV IPC objects (it owns or created them), as ipcrm arguments. */
export function ipcObjectsOf(uid: number): string[] {
  return ipcObjectsWhere((owner) => owner === uid).args;
}

/** SysV IPC objects whose owner or creator passes `of`: ipcrm arguments and those uids. */
function ipcObjectsWhere(of: (uid: number) => boolean): { args: string[]; uids: Set<number> } {
  const args: string[] = [];
  const uids = new Set<number>();
  for (const kind of IPC_KINDS) {
    let text: string;
    try {
      text = readFileSync(`/proc/sysvipc/${kind.file}`, "latin1");
    } catch {
      continue; // no SysV IPC in this kernel
    }
    const [header, ...rows] = text.split("\n");
    const cols = (header ?? "").trim().split(/\s+/);
    const [id, u, cu] = [kind.id, "uid", "cuid"].map((c) => cols.indexOf(c));
    if (id === undefined || u === undefined || cu === undefined || id < 0 || u < 0 || cu < 0)
      continue;
    for (const row of rows) {
      const f = row.trim().split(/\s+/);
      if (f.length < cols.length) continue;
      const owners = [Number(f[u]), Number(f[cu])].filter(of);
      if (owners.length === 0) continue;
      args.push(kind.flag, f[id] as string);
      for (const o of owners) uids.add(o);
    }
  }
  return { args, uids };
}

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
  const seen = new Set<string>();
  for (const dir of opts.dirs ?? UID_FILE_DIRS) {
    let fd: number;
    try {
      fd = openSync(dir, constants.O_RDONLY | constants.O_DIRECTORY);
    } catch {
      continue;
    }
    try {
      const st = fstatSync(fd);
      const key = `${st.dev}:${st.ino}`;
      if (seen.has(key)) continue;
      seen.add(key);
      await look(fd, opts.depth ?? 3);
    } finally {
      closeSync(fd);
    }
  }
  return found;
}

let warnedNoIpcrm = false;

/** One ipcrm for all of them (none when there are none); what is still listed after it failed. */
async function removeIpc(uid: number): Promise<UidFiles> {
  const args = ipcObjectsOf(uid);
  if (args.length === 0) return { removed: 0, failed: [] };
  const ipcrm = INSTANCE_PATH.split(":")
    .map((d) => `${d}/ipcrm`)
    .find((p) => existsSync(p));
  if (!ipcrm) {
    // Not a reason to take the uid out of the pool on every host without util-linux's ipcrm.
    if (!warnedNoIpcrm) {
      warnedNoIpcrm = true;
      process.emitWarning("ipcrm not found: SysV IPC objects of instance uids are not removed");
    }
    return { removed: 0, failed: [] };
  }
  // Its status is not used: one id removed meanwhile makes it fail for all; the listing decides.
  await new Promise<void>((resolve) =>
    execFile(ipcrm, args, { env: { PATH: INSTANCE_PATH } }, () => resolve()),
  );
  const left = ipcObjectsOf(uid);
  const failed: string[] = [];
  for (let i = 0; i < left.length; i += 2) failed.push(`SysV IPC ${left[i]} ${left[i + 1]}`);
  return { removed: (args.length - left.length) / 2, failed };
}
