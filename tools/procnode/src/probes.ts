import { spawn } from "node:child_process";
import http from "node:http";
import https from "node:https";
import net from "node:net";
import type { V1Container, V1Probe } from "@kubernetes/client-node";

export interface ProbeTarget {
  podIP: string;
  container: V1Container;
  /** For exec probes: the container's process environment and working directory. */
  env: Record<string, string>;
  cwd: string;
}

export interface ProbeResult {
  ok: boolean;
  message: string;
}

/** One probe attempt as the kubelet makes it: HTTP 200-399, a TCP connect, or exec exit 0. */
export async function probeOnce(probe: V1Probe, t: ProbeTarget): Promise<ProbeResult> {
  const timeoutMs = (probe.timeoutSeconds ?? 1) * 1000;
  if (probe.httpGet) {
    const g = probe.httpGet;
    const port = resolvePort(g.port, t.container);
    if (port === undefined) return { ok: false, message: `unknown port ${g.port}` };
    const headers = Object.fromEntries((g.httpHeaders ?? []).map((h) => [h.name, h.value]));
    return httpProbe(
      g.scheme === "HTTPS",
      g.host || t.podIP,
      port,
      g.path ?? "/",
      headers,
      timeoutMs,
    );
  }
  if (probe.tcpSocket) {
    const port = resolvePort(probe.tcpSocket.port, t.container);
    if (port === undefined) return { ok: false, message: `unknown port ${probe.tcpSocket.port}` };
    return tcpProbe(probe.tcpSocket.host || t.podIP, port, timeoutMs);
  }
  if (probe.exec?.command?.length) return execProbe(probe.exec.command, t, timeoutMs);
  // gRPC probes would need a gRPC health client; never report an unchecked probe as passing.
  return { ok: false, message: "procnode supports httpGet, tcpSocket and exec probes only" };
}

export function resolvePort(port: number | string, c: V1Container): number | undefined {
  if (typeof port === "number") return port;
  if (/^\d+$/.test(port)) return Number(port);
  return c.ports?.find((p) => p.name === port)?.containerPort;
}

function httpProbe(
  tls: boolean,
  host: string,
  port: number,
  path: string,
  headers: Record<string, string>,
  timeoutMs: number,
): Promise<ProbeResult> {
  return new Promise((resolve) => {
    const req = (tls ? https : http).request(
      {
        host,
        port,
        path,
        method: "GET",
        headers: { "User-Agent": "kube-probe/1.35", ...headers },
        timeout: timeoutMs,
        rejectUnauthorized: false,
        agent: false,
      },
      (res) => {
        res.resume();
        const code = res.statusCode ?? 0;
        resolve({ ok: code >= 200 && code < 400, message: `HTTP probe ${path}: status ${code}` });
      },
    );
    req.on("timeout", () => req.destroy(new Error(`timeout after ${timeoutMs} ms`)));
    req.on("error", (err) =>
      resolve({ ok: false, message: `Get "http://${host}:${port}${path}": ${err.message}` }),
    );
    req.end();
  });
}

function tcpProbe(host: string, port: number, timeoutMs: number): Promise<ProbeResult> {
  return new Promise((resolve) => {
    const sock = net.connect({ host, port, timeout: timeoutMs });
    sock.once("connect", () => {
      sock.destroy();
      resolve({ ok: true, message: "connected" });
    });
    sock.once("timeout", () => sock.destroy(new Error(`timeout after ${timeoutMs} ms`)));
    sock.once("error", (err) =>
      resolve({ ok: false, message: `dial tcp ${host}:${port}: ${err.message}` }),
    );
  });
}

function execProbe(command: string[], t: ProbeTarget, timeoutMs: number): Promise<ProbeResult> {
  return new Promise((resolve) => {
    const [cmd = "", ...args] = command;
    const child = spawn(cmd, args, { cwd: t.cwd, env: t.env, stdio: "ignore", timeout: timeoutMs });
    child.once("error", (err) => resolve({ ok: false, message: `exec ${cmd}: ${err.message}` }));
    child.once("exit", (code, sig) =>
      resolve({ ok: code === 0, message: `exec ${cmd}: exit ${code ?? sig}` }),
    );
  });
}
