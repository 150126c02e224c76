import { execFile } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { INSTANCE_PATH } from "./instance-launch";

// The SysV IPC objects of instance uids (docs/security.md): removed with what a uid left in
// world-writable places (uid-files.ts), and looked for at a poolkeeper's start
// (uids-with-files.ts).

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
export function ipcObjectsWhere(of: (uid: number) => boolean): {
  args: string[];
  uids: Set<number>;
} {
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

let warnedNoIpcrm = false;

/** One ipcrm for all of them (none when there are none); what is still listed after it failed. */
export async function removeIpc(uid: number): Promise<{ removed: number; failed: string[] }> {
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
