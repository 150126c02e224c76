import {
  closeSync,
  constants,
  fstatSync,
  lstatSync,
  openSync,
  readdirSync,
  type Stats,
} from "node:fs";
import { at, NOFOLLOW_DIR, TreeRemoval } from "./remove-tree";
import { removeIpc } from "./uid-ipc";

// What an instance uid left outside its instance directory, removed before the uid is handed to
// another function (maybe another tenant's): files in world-writable places and SysV IPC objects
// (docs/security.md). A leaf like uid-cleanup.ts, which calls it: the tree removal it shares with
// leftovers.ts is remove-tree.ts, as importing leftovers.ts would close an import cycle
// (leftovers -> uid-cleanup -> here).

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
export const ENTRIES = 100_000;
const PACE = 4;
/** The clean-ups past their first ENTRIES, one after another (see ENTRIES). */
let paced: Promise<void> = Promise.resolve();
/** Synchronous fs calls between two turns of the event loop (as uid-cleanup.ts's SCAN_BATCH). */
export const BATCH = 64;

/**
 * Removes everything `uid` owns (lstat: the entry itself, never a link's target) in `dirs` and in
 * world-writable directories of other owners below them, and its SysV IPC objects.
 *
 * Call only once no process of `uid` runs (killUid said left 0): a live one could create entries
 * behind the scan, or swap its own entries for links while they are removed. Other live uids
 * cannot redirect the removal: every directory is walked through a descriptor opened with
 * O_NOFOLLOW (names resolved as /proc/self/fd/<fd>/<name>: remove-tree.ts), and a directory of
 * the uid is checked to still be its own through that descriptor before it is emptied.
 */
export async function removeUidFiles(uid: number, opts: UidFilesOptions = {}): Promise<UidFiles> {
  const walk = new Walk(uid, opts.entries ?? ENTRIES);
  try {
    await eachUidFileDir(opts.dirs ?? UID_FILE_DIRS, (fd, dir) =>
      walk.scan(fd, dir, opts.depth ?? 3),
    );
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

/** Runs `look` on each of `dirs` there is on this host, open, once per directory. */
export async function eachUidFileDir(
  dirs: string[],
  look: (fd: number, dir: string) => Promise<void>,
): Promise<void> {
  const seen = new Set<string>();
  for (const dir of dirs) {
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
      await look(fd, dir);
    } finally {
      closeSync(fd);
    }
  }
}

class Walk {
  private readonly failed: string[] = [];
  /**
   * The uid's own entries and what is under them, whoever owns that: synchronous calls paced by
   * tick, moved up past 64 levels (a failure there would quarantine the uid, and one mkdir loop
   * per instance would drain the pool), failures recorded, and a top directory emptied only while
   * still the uid's.
   */
  private readonly tree: TreeRemoval;
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
    this.tree = new TreeRemoval({
      calls: "sync",
      before: () => this.tick(true), // the uid's own tree spends nothing (ENTRIES)
      moveUp: true,
      failed: this.failed,
      owner: uid,
    });
  }

  /** Ends the walk: the next paced clean-up may go on. */
  done(): void {
    this.release?.();
  }

  result(): UidFiles {
    return { removed: this.tree.removed, failed: [...this.failed] };
  }

  /** Looks at every entry of the open directory `fd` (shown as `shown` in failures). */
  async scan(fd: number, shown: string, depth: number): Promise<void> {
    for (const name of await this.list(fd, shown)) {
      const st = await this.lstat(fd, name, `${shown}/${name}`);
      if (!st) continue;
      if (st.uid === this.uid) {
        this.left++; // the uid's own: looking at it spends nothing (ENTRIES)
        await this.tree.remove(fd, name, `${shown}/${name}`, st);
      } else if (st.isDirectory() && (st.mode & 0o002) !== 0 && depth > 0) {
        // Another owner's world-writable directory (sticky or not): the uid could write there.
        const child = this.open(fd, name, `${shown}/${name}`);
        if (child === undefined) continue;
        try {
          await this.scan(child, `${shown}/${name}`, depth - 1);
        } finally {
          closeSync(child);
        }
      }
    }
  }

  private async list(fd: number, shown: string): Promise<string[]> {
    await this.tick();
    try {
      return readdirSync(`/proc/self/fd/${fd}`);
    } catch (err) {
      this.tree.failure(shown, err);
      return [];
    }
  }

  private async lstat(fd: number, name: string, shown: string): Promise<Stats | undefined> {
    await this.tick();
    try {
      return lstatSync(at(fd, name));
    } catch (err) {
      this.tree.failure(shown, err);
      return undefined;
    }
  }

  private open(fd: number, name: string, shown: string): number | undefined {
    try {
      return openSync(at(fd, name), NOFOLLOW_DIR);
    } catch (err) {
      // Its owner may have swapped it for a link or file meanwhile (ELOOP, ENOTDIR): what it
      // moved away is its to hide, not a reason to quarantine another uid.
      const code = (err as NodeJS.ErrnoException).code;
      if (code !== "ELOOP" && code !== "ENOTDIR") this.tree.failure(shown, err);
      return undefined;
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
