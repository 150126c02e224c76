import { readdir, readFile } from "node:fs/promises";
import { round } from "./stats";

/**
 * RSS and open file descriptors of a set of processes, sampled at an interval from /proc, and the
 * least-squares slope of each over the run: the soak's "is anything leaking" figure. One sample
 * is noisy (GC, allocator), a slope over a few dozen samples is not.
 */
export interface ProcSample {
  /** Seconds since the sampler started. */
  t: number;
  rssMb: number;
  /**
   * RssAnon: the process's own memory (heap, stacks, malloc), without file pages. The node
   * binary's code pages count in RSS once touched (a first TurboFan compile faults in ~3.5 MB of
   * it, once): growth here is the process's, not the binary's.
   */
  anonMb: number;
  fds: number;
}

export interface ProcTrend {
  samples: number;
  rss_start_mb: number;
  rss_end_mb: number;
  rss_max_mb: number;
  rss_slope_mb_per_min: number;
  fds_start: number;
  fds_end: number;
  fds_max: number;
  fd_slope_per_min: number;
  /**
   * The RSS slope over the second half of the samples only: a heap still growing towards its
   * steady size after warm-up flattens here, a leak does not.
   */
  rss_slope_late_mb_per_min: number;
  anon_start_mb: number;
  anon_end_mb: number;
  anon_slope_mb_per_min: number;
  anon_slope_late_mb_per_min: number;
}

export async function sampleProc(
  pid: number,
): Promise<{ rssMb: number; anonMb: number; fds: number }> {
  try {
    const status = await readFile(`/proc/${pid}/status`, "utf8");
    const kb = (field: string) =>
      Number(new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(status)?.[1] ?? NaN);
    const fds = (await readdir(`/proc/${pid}/fd`)).length;
    return { rssMb: kb("VmRSS") / 1024, anonMb: kb("RssAnon") / 1024, fds };
  } catch {
    return { rssMb: NaN, anonMb: NaN, fds: NaN }; // the process is gone (restarted by the supervisor)
  }
}

/** The least-squares slope of y over x (units of y per unit of x); NaN with fewer than 2 points. */
export function slope(points: readonly { x: number; y: number }[]): number {
  const pts = points.filter((p) => Number.isFinite(p.y));
  const n = pts.length;
  if (n < 2) return NaN;
  const mx = pts.reduce((a, p) => a + p.x, 0) / n;
  const my = pts.reduce((a, p) => a + p.y, 0) / n;
  let num = 0;
  let den = 0;
  for (const p of pts) {
    num += (p.x - mx) * (p.y - my);
    den += (p.x - mx) ** 2;
  }
  return den === 0 ? NaN : num / den;
}

export function trendOf(samples: readonly ProcSample[]): ProcTrend {
  const ok = samples.filter((s) => Number.isFinite(s.rssMb));
  const first = ok[0];
  const last = ok[ok.length - 1];
  const perMin = (pick: (s: ProcSample) => number, from = 0) =>
    slope(ok.slice(from).map((s) => ({ x: s.t / 60, y: pick(s) })));
  return {
    samples: ok.length,
    rss_start_mb: round(first?.rssMb ?? NaN, 1),
    rss_end_mb: round(last?.rssMb ?? NaN, 1),
    rss_max_mb: round(Math.max(...ok.map((s) => s.rssMb)), 1),
    rss_slope_mb_per_min: round(
      perMin((s) => s.rssMb),
      3,
    ),
    fds_start: first?.fds ?? NaN,
    fds_end: last?.fds ?? NaN,
    fds_max: Math.max(...ok.map((s) => s.fds)),
    fd_slope_per_min: round(
      perMin((s) => s.fds),
      3,
    ),
    rss_slope_late_mb_per_min: round(
      perMin((s) => s.rssMb, Math.floor(ok.length / 2)),
      3,
    ),
    anon_start_mb: round(first?.anonMb ?? NaN, 1),
    anon_end_mb: round(last?.anonMb ?? NaN, 1),
    anon_slope_mb_per_min: round(
      perMin((s) => s.anonMb),
      3,
    ),
    anon_slope_late_mb_per_min: round(
      perMin((s) => s.anonMb, Math.floor(ok.length / 2)),
      3,
    ),
  };
}

/** Samples every pid of `pids` each `intervalMs` until stop(). */
export class ProcSampler {
  private readonly series_ = new Map<string, ProcSample[]>();
  private timer: NodeJS.Timeout | undefined;
  private readonly started = performance.now();

  constructor(
    private readonly pids: Readonly<Record<string, number>>,
    private readonly intervalMs: number,
  ) {}

  start(): void {
    void this.sample();
    this.timer = setInterval(() => void this.sample(), this.intervalMs);
  }

  async sample(): Promise<void> {
    const t = (performance.now() - this.started) / 1000;
    await Promise.all(
      Object.entries(this.pids).map(async ([name, pid]) => {
        const s = await sampleProc(pid);
        let list = this.series_.get(name);
        if (!list) this.series_.set(name, (list = []));
        list.push({ t, ...s });
      }),
    );
  }

  /** Every sample so far, per process (RSS in MB, one decimal). */
  series(): Record<string, ProcSample[]> {
    return Object.fromEntries(
      [...this.series_].map(([name, list]) => [
        name,
        list.map((s) => ({
          t: Math.round(s.t),
          rssMb: round(s.rssMb, 1),
          anonMb: round(s.anonMb, 1),
          fds: s.fds,
        })),
      ]),
    );
  }

  /** Takes a last sample and returns every process's trend. */
  async stop(): Promise<Record<string, ProcTrend>> {
    clearInterval(this.timer);
    await this.sample();
    return Object.fromEntries([...this.series_].map(([name, s]) => [name, trendOf(s)]));
  }
}
