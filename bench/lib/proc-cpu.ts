import { readFile } from "node:fs/promises";

/** CPU time (user + system) of one process so far, in ms (/proc/<pid>/stat; ticks of 10 ms). */
export async function cpuMs(pid: number): Promise<number> {
  const stat = await readFile(`/proc/${pid}/stat`, "utf8");
  // Fields after the command name (which may hold spaces): utime is field 14, stime 15.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) * 10;
}

/**
 * Waits (at most 60 s) until the processes together use under 5% of a core over a second, twice
 * in a row: a figure taken while another service is still busy is that service's, not the one
 * measured.
 */
export async function waitQuiet(pids: readonly number[]): Promise<void> {
  const total = async () => {
    let ms = 0;
    for (const pid of pids) ms += await cpuMs(pid);
    return ms;
  };
  const end = Date.now() + 60_000;
  let calm = 0;
  while (calm < 2 && Date.now() < end) {
    const before = await total();
    await new Promise((r) => setTimeout(r, 1000));
    calm = (await total()) - before < 50 ? calm + 1 : 0;
  }
}
