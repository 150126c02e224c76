/**
 * FIZZ_TRUSTED_PROXIES: the peers (load balancers, ingress controllers) whose X-Forwarded-Host,
 * X-Forwarded-Proto and Forwarded headers the gateway passes on. From anyone else those headers are
 * the client's own claims: a function that builds an absolute link from them (a password-reset
 * mail) would point it wherever the client chose, so the gateway sets them itself (server.ts).
 */
import { BlockList, isIP } from "node:net";

/** Whether the gateway's peer (an IPv4 address without `::ffff:`, or IPv6) is a trusted proxy. */
export type TrustedProxies = (address: string) => boolean;

/**
 * Comma-separated addresses and CIDRs (`10.0.0.0/8`, `192.0.2.7`, `fd00::/8`); empty or unset: none.
 * Throws an Error naming the entry and why it is refused.
 */
export function parseTrustedProxies(text: string | undefined): string[] {
  const out: string[] = [];
  for (const raw of (text ?? "").split(",")) {
    const entry = raw.trim();
    if (entry === "") continue;
    const slash = entry.indexOf("/");
    const address = slash < 0 ? entry : entry.slice(0, slash);
    const family = isIP(address);
    if (family === 0) throw new Error(`"${entry}": not an IP address or CIDR`);
    if (slash >= 0) {
      const bits = entry.slice(slash + 1);
      const max = family === 4 ? 32 : 128;
      if (!/^\d{1,3}$/.test(bits) || Number(bits) > max)
        throw new Error(`"${entry}": the prefix length must be 0-${max}`);
    }
    out.push(entry);
  }
  return out;
}

/** A matcher for a list parseTrustedProxies accepted; none trusted for an empty list. */
export function trustedProxies(list: readonly string[]): TrustedProxies {
  if (list.length === 0) return () => false;
  const blocks = new BlockList();
  for (const entry of list) {
    const [address = "", bits] = entry.split("/");
    const type = isIP(address) === 4 ? "ipv4" : "ipv6";
    if (bits === undefined) blocks.addAddress(address, type);
    else blocks.addSubnet(address, Number(bits), type);
  }
  return (address) => {
    const family = isIP(address);
    return family !== 0 && blocks.check(address, family === 4 ? "ipv4" : "ipv6");
  };
}
