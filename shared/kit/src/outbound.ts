import dns from "node:dns";
import net from "node:net";
import { Agent, buildConnector, request, type Dispatcher } from "undici";

/**
 * The guard for every URL the platform fetches on a user's behalf (X-Callback-Url, ...). Without
 * it a user could make the platform POST to the registry, NATS, Redis, a cloud metadata endpoint
 * or anything else on the platform's network ("server-side request forgery").
 *
 * Refused by default: any address that is loopback, link-local, private, CGNAT, unspecified,
 * multicast, broadcast or reserved (IPv4-mapped and IPv4-embedding IPv6 forms included), and the
 * platform's own endpoints. A hostname is refused when ANY address it resolves to is. The check
 * runs inside the connection's own DNS lookup, so the address connected to is the one checked (no
 * DNS-rebinding window), and again on every redirect hop.
 *
 * `allow` (FIZZ_OUTBOUND_ALLOW) opens hostnames, IPs or CIDRs; `platform` endpoints stay refused
 * even then (an allow-listed 127.0.0.1 must still not reach the registry's port).
 */
export class OutboundRefused extends Error {
  override readonly name = "OutboundRefused";
  readonly code = "OUTBOUND_REFUSED";
}

export interface OutboundOptions {
  /** Hostnames (exact, case-insensitive), IPs or CIDRs that may be reached even if internal. */
  allow?: readonly string[];
  /**
   * The platform's own endpoints, always refused: `host`, `ip`, `cidr`, each optionally with a
   * port (`127.0.0.1:8081`, `[::1]:8081`, `10.0.0.0/8:4222`, `registry.fizz.svc:8081`).
   */
  platform?: readonly string[];
  /** For tests: resolves a hostname to all its addresses (default dns.lookup). */
  lookup?: (hostname: string) => Promise<{ address: string; family: number }[]>;
  connectTimeoutMs?: number;
  maxRedirects?: number;
}

const DENIED_V4 = [
  ["0.0.0.0", 8], // "this network", unspecified
  ["10.0.0.0", 8],
  ["100.64.0.0", 10], // CGNAT
  ["127.0.0.0", 8],
  ["169.254.0.0", 16], // link-local, cloud metadata
  ["172.16.0.0", 12],
  ["192.0.0.0", 24],
  ["192.0.2.0", 24],
  ["192.168.0.0", 16],
  ["198.18.0.0", 15],
  ["198.51.100.0", 24],
  ["203.0.113.0", 24],
  ["224.0.0.0", 4], // multicast
  ["240.0.0.0", 4], // reserved, broadcast
] as const;
const DENIED_V6 = [
  ["::", 96], // unspecified, loopback, IPv4-compatible
  ["64:ff9b::", 96], // NAT64: embeds an IPv4 address
  ["64:ff9b:1::", 48],
  ["100::", 64], // discard
  ["2001:db8::", 32],
  ["2002::", 16], // 6to4: embeds an IPv4 address
  ["fc00::", 7], // unique local
  ["fe80::", 10], // link-local
  ["fec0::", 10], // site-local (deprecated)
  ["ff00::", 8], // multicast
] as const;

// IPv4-mapped IPv6 (::ffff:a.b.c.d) needs no rule: BlockList checks it against the IPv4 ones.
const internal = new net.BlockList();
for (const [a, p] of DENIED_V4) internal.addSubnet(a, p, "ipv4");
for (const [a, p] of DENIED_V6) internal.addSubnet(a, p, "ipv6");

/** Whether an IP address is internal (not publicly routable). */
export function isInternalAddress(ip: string): boolean {
  const family = net.isIP(ip);
  if (family === 0) return true;
  return internal.check(ip, family === 4 ? "ipv4" : "ipv6");
}

interface Rule {
  /** Lower-case hostname, or undefined when `block` matches addresses. */
  host?: string;
  block?: net.BlockList;
  port?: number;
}

function unbracket(h: string): string {
  return h.startsWith("[") && h.endsWith("]") ? h.slice(1, -1) : h;
}

/** One list entry as a rule; throws naming the entry when it is not one. */
function parseRule(entry: string, withPort: boolean): Rule {
  let text = entry.trim();
  let port: number | undefined;
  const m = withPort ? /^(.*[^:]):(\d{1,5})$/.exec(text) : null;
  // "host:port", "[v6]:port", "cidr:port"; a bare IPv6 address has several colons and no port.
  if (m && (net.isIP(m[1] as string) !== 6 || text.startsWith("["))) {
    text = m[1] as string;
    port = Number(m[2]);
    if (port < 1 || port > 65535) throw new Error(`"${entry}": port out of range`);
  }
  text = unbracket(text);
  const slash = text.indexOf("/");
  const ip = slash < 0 ? text : text.slice(0, slash);
  const family = net.isIP(ip);
  if (family === 0) {
    if (slash >= 0 || !/^[a-z0-9.-]+$/i.test(text) || text.length > 253)
      throw new Error(`"${entry}": not a hostname, IP address or CIDR`);
    return { host: text.toLowerCase(), ...(port !== undefined ? { port } : {}) };
  }
  const max = family === 4 ? 32 : 128;
  const prefix = slash < 0 ? max : Number(text.slice(slash + 1));
  if (!Number.isInteger(prefix) || prefix < 0 || prefix > max || text.slice(slash + 1) === "")
    throw new Error(`"${entry}": bad prefix length`);
  const block = new net.BlockList();
  block.addSubnet(ip, prefix, family === 4 ? "ipv4" : "ipv6");
  return { block, ...(port !== undefined ? { port } : {}) };
}

/** Splits and validates a comma-separated list (FIZZ_OUTBOUND_ALLOW and the like). */
export function parseOutboundList(text: string | undefined, withPort = false): string[] {
  if (text === undefined || text.trim() === "") return [];
  const entries = text
    .split(",")
    .map((s) => s.trim())
    .filter((s) => s.length > 0);
  for (const e of entries) parseRule(e, withPort);
  return entries;
}

function matches(rule: Rule, hostname: string, ip: string | undefined, port?: number): boolean {
  if (rule.port !== undefined && port !== undefined && rule.port !== port) return false;
  if (rule.host !== undefined) return rule.host === hostname;
  if (ip === undefined) return false;
  return rule.block?.check(ip, net.isIP(ip) === 4 ? "ipv4" : "ipv6") ?? false;
}

const DEFAULT_PORTS: Record<string, number> = { "http:": 80, "https:": 443 };

export class OutboundGuard {
  private readonly allow: Rule[];
  private readonly platform: Rule[] = [];
  private readonly lookup: NonNullable<OutboundOptions["lookup"]>;
  private readonly agent: Agent;
  private readonly maxRedirects: number;

  constructor(opts: OutboundOptions = {}) {
    this.allow = (opts.allow ?? []).map((e) => parseRule(e, false));
    for (const e of opts.platform ?? []) this.addPlatform(e);
    this.lookup = opts.lookup ?? ((h) => dns.promises.lookup(h, { all: true, verbatim: true }));
    this.maxRedirects = opts.maxRedirects ?? 5;
    const timeout = opts.connectTimeoutMs ?? 5000;
    this.agent = new Agent({
      connections: 16,
      // A connector per connection so the lookup knows the port (platform rules have ports).
      connect: (o, cb) => {
        const port = Number(o.port) || (DEFAULT_PORTS[o.protocol] ?? 80);
        const hostname = unbracket(o.hostname).toLowerCase();
        if (net.isIP(hostname) !== 0) {
          // No lookup happens for an IP literal: check it here.
          const why = this.refusal(hostname, hostname, port);
          if (why !== undefined) {
            cb(new OutboundRefused(why), null);
            return;
          }
        }
        buildConnector({ timeout, lookup: this.lookupFor(port) })(o, cb);
      },
    });
  }

  /** Adds one of the platform's own endpoints (e.g. the gateway's bound port). */
  addPlatform(entry: string): void {
    this.platform.push(parseRule(entry, true));
  }

  /** Why a connection to `ip` (resolved from `hostname`) on `port` is refused; undefined if not. */
  refusal(hostname: string, ip: string, port: number): string | undefined {
    const host = hostname.toLowerCase();
    if (this.platform.some((r) => matches(r, host, ip, port)))
      return `${hostname} (${ip}:${port}) is one of the platform's own endpoints`;
    if (!isInternalAddress(ip)) return undefined;
    if (this.allow.some((r) => matches(r, host, ip))) return undefined;
    return `${hostname} resolves to ${ip}, an internal address (loopback, private, link-local, multicast or reserved); FIZZ_OUTBOUND_ALLOW can open it`;
  }

  /**
   * Checks a URL before anything is sent: http(s) only, no credentials in it, and every address
   * its host resolves to allowed. Throws OutboundRefused saying why.
   */
  async check(raw: string): Promise<URL> {
    let u: URL;
    try {
      u = new URL(raw);
    } catch {
      throw new OutboundRefused("not a valid absolute URL");
    }
    if (u.protocol !== "http:" && u.protocol !== "https:")
      throw new OutboundRefused(`scheme ${u.protocol} is not allowed (http or https only)`);
    if (u.username !== "" || u.password !== "")
      throw new OutboundRefused("credentials in the URL are not allowed");
    const hostname = unbracket(u.hostname);
    const port = Number(u.port) || (DEFAULT_PORTS[u.protocol] as number);
    const addresses = net.isIP(hostname)
      ? [hostname]
      : await this.resolve(hostname).then((a) => a.map((x) => x.address));
    for (const ip of addresses) {
      const why = this.refusal(hostname, ip, port);
      if (why !== undefined) throw new OutboundRefused(why);
    }
    return u;
  }

  /**
   * Sends a request through the guard, following up to `maxRedirects` redirects itself and
   * checking each hop (307/308 keep the method and body; 301/302/303 become a GET without body).
   */
  async request(
    raw: string,
    init: {
      method: Dispatcher.HttpMethod;
      headers: Record<string, string>;
      body?: Uint8Array;
      timeoutMs: number;
      signal?: AbortSignal | undefined;
    },
  ): Promise<Dispatcher.ResponseData> {
    let url = raw;
    let { method, body } = init;
    for (let hop = 0; ; hop++) {
      await this.check(url);
      const res = await request(url, {
        method,
        headers: body === undefined ? omitContent(init.headers) : init.headers,
        body: body ?? null,
        dispatcher: this.agent,
        headersTimeout: init.timeoutMs,
        bodyTimeout: init.timeoutMs,
        signal: init.signal,
      });
      const location = res.headers.location;
      if (res.statusCode < 300 || res.statusCode > 308 || location === undefined) return res;
      await res.body.dump();
      if (hop >= this.maxRedirects)
        throw new OutboundRefused(`more than ${this.maxRedirects} redirects`);
      url = new URL(Array.isArray(location) ? (location[0] ?? "") : location, url).toString();
      if (res.statusCode !== 307 && res.statusCode !== 308 && method !== "GET") {
        method = "GET";
        body = undefined;
      }
    }
  }

  async close(): Promise<void> {
    await this.agent.close().catch(() => undefined);
  }

  private async resolve(hostname: string): Promise<{ address: string; family: number }[]> {
    let addresses: { address: string; family: number }[];
    try {
      addresses = await this.lookup(hostname);
    } catch (err) {
      throw new OutboundRefused(`${hostname} does not resolve: ${(err as Error).message}`);
    }
    if (addresses.length === 0) throw new OutboundRefused(`${hostname} does not resolve`);
    return addresses;
  }

  /** net.connect's lookup: resolves, refuses if any address is refused, answers as asked. */
  private lookupFor(port: number): net.LookupFunction {
    return (hostname, options, callback) => {
      this.resolve(hostname).then(
        (all) => {
          for (const a of all) {
            const why = this.refusal(hostname, a.address, port);
            if (why !== undefined) {
              callback(new OutboundRefused(why), "", 4);
              return;
            }
          }
          const wanted = options.family === 4 || options.family === 6 ? options.family : 0;
          const fit = wanted === 0 ? all : all.filter((a) => a.family === wanted);
          if (options.all) {
            (callback as unknown as (e: null, a: dns.LookupAddress[]) => void)(null, fit);
          } else if (fit[0]) {
            callback(null, fit[0].address, fit[0].family);
          } else {
            callback(new OutboundRefused(`${hostname} has no IPv${wanted} address`), "", 4);
          }
        },
        (err: unknown) => callback(err as NodeJS.ErrnoException, "", 4),
      );
    };
  }
}

function omitContent(h: Record<string, string>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(h)) if (!k.toLowerCase().startsWith("content-")) out[k] = v;
  return out;
}
