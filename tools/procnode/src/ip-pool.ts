import net from "node:net";

/**
 * Pod IPs 127.0.0.N (N from 2; .1 is the node). Linux routes all of 127/8 to the loopback device,
 * so a process can bind 127.0.0.7:8888 while another binds 127.0.0.8:8888, as pods in a cluster do.
 * Unique per procnode only: two procnodes on one host need different bases.
 */
export class IpPool {
  private readonly used = new Set<number>();

  constructor(private readonly base: string) {
    if (!/^\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(base))
      throw new Error(`podIpBase must be three octets like 127.0.0, got "${base}"`);
  }

  /** The lowest free address, or `preferred` when it is ours and free (a pod keeps its IP across an agent restart). */
  allocate(preferred?: string): string {
    const want = preferred ? this.hostPart(preferred) : undefined;
    if (want !== undefined && !this.used.has(want)) {
      this.used.add(want);
      return `${this.base}.${want}`;
    }
    for (let n = 2; n <= 254; n++) {
      if (!this.used.has(n)) {
        this.used.add(n);
        return `${this.base}.${n}`;
      }
    }
    throw new Error(`no free pod IP left in ${this.base}.2-254`);
  }

  /**
   * Like allocate, but skips addresses where another program (another procnode's pod, a stray
   * server) already listens on one of `ports`, so pods never fight over 127.0.0.N:8888.
   */
  async allocateUsable(ports: number[], preferred?: string): Promise<string> {
    const skipped: string[] = [];
    try {
      for (;;) {
        const ip = this.allocate(skipped.length ? undefined : preferred);
        if ((await Promise.all(ports.map((p) => canBind(ip, p)))).every(Boolean)) return ip;
        skipped.push(ip);
      }
    } finally {
      for (const ip of skipped) this.release(ip);
    }
  }

  release(ip: string): void {
    const n = this.hostPart(ip);
    if (n !== undefined) this.used.delete(n);
  }

  private hostPart(ip: string): number | undefined {
    if (!ip.startsWith(`${this.base}.`)) return undefined;
    const n = Number(ip.slice(this.base.length + 1));
    return Number.isInteger(n) && n >= 2 && n <= 254 ? n : undefined;
  }
}

function canBind(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = net.createServer();
    srv.once("error", () => resolve(false));
    srv.listen({ host, port, exclusive: true }, () => srv.close(() => resolve(true)));
  });
}
