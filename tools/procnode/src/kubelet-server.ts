import type { IncomingMessage, ServerResponse } from "node:http";
import { createServer, type Server } from "node:https";
import type { TLSSocket } from "node:tls";
import type { Logger } from "@fizz/kit";
import { AuthorizationV1Api, type KubeConfig } from "@kubernetes/client-node";
import { generate } from "selfsigned";
import { errorMessage } from "./kube";
import { LogQueryError, parseLogQuery } from "./log-query";
import { streamLogs, type LogSource } from "./log-reader";

/** What the endpoint needs to know of a pod's container. */
export interface ContainerLogs {
  /** The current (or last) run; undefined before the container ever started. */
  current(): LogSource | undefined;
  /** The run before it (`previous=true`), or undefined. */
  previous(): LogSource | undefined;
}

export interface KubeletServerOptions {
  nodeName: string;
  /** PEM of the CA whose client certificates are accepted (the cluster CA). */
  clientCa: string;
  /** The identity that asks the API server for SubjectAccessReviews (the node's own). */
  kubeConfig: KubeConfig;
  /** The container of a pod on this node: "pod" and "container" say which is missing. */
  lookup(namespace: string, pod: string, container: string): ContainerLogs | "pod" | "container";
  /** 0 (default): a free port, published in the Node's daemonEndpoints. */
  port?: number;
  logger: Logger;
}

export interface KubeletServer {
  port: number;
  close(): Promise<void>;
}

const DECISION_TTL_MS = 30_000;

/**
 * The slice of the kubelet API that `kubectl logs` needs: GET /containerLogs/{ns}/{pod}/{container}
 * over HTTPS on 127.0.0.1 (the Node's InternalIP). Callers are authenticated as the kubelet does
 * with --client-ca-file: a client certificate signed by the cluster CA, or the TLS handshake fails
 * (the API server presents its apiserver-kubelet-client certificate). They are then authorized as
 * the kubelet's webhook mode does: a SubjectAccessReview for `get nodes/proxy` on this node, for
 * the certificate's user (CN) and groups (O). The serving certificate is self-signed, as a kubelet
 * without --tls-cert-file makes one; the API server checks it only with
 * --kubelet-certificate-authority, which k8s-lite does not set.
 */
export async function startKubeletServer(opts: KubeletServerOptions): Promise<KubeletServer> {
  const log = opts.logger.child({ component: "kubelet-server" });
  const pems = await generate([{ name: "commonName", value: `${opts.nodeName}@procnode` }], {
    keyType: "ec",
    algorithm: "sha256",
    extensions: [
      { name: "extKeyUsage", serverAuth: true },
      {
        name: "subjectAltName",
        altNames: [
          { type: 7, ip: "127.0.0.1" },
          { type: 2, value: opts.nodeName },
        ],
      },
    ],
  });
  const authz = opts.kubeConfig.makeApiClient(AuthorizationV1Api);
  const decisions = new Map<string, { allowed: boolean; until: number }>();
  const authorize = async (user: string, groups: string[]): Promise<boolean> => {
    const key = `${user}\n${groups.join(",")}`;
    const hit = decisions.get(key);
    if (hit && hit.until > Date.now()) return hit.allowed;
    const review = await authz.createSubjectAccessReview({
      body: {
        spec: {
          user,
          groups,
          resourceAttributes: {
            verb: "get",
            resource: "nodes",
            subresource: "proxy",
            name: opts.nodeName,
          },
        },
      },
    });
    const allowed = review.status?.allowed === true;
    decisions.set(key, { allowed, until: Date.now() + DECISION_TTL_MS });
    return allowed;
  };

  const server: Server = createServer(
    {
      key: pems.private,
      cert: pems.cert,
      ca: opts.clientCa,
      requestCert: true,
      rejectUnauthorized: true,
      minVersion: "TLSv1.2",
    },
    (req, res) => {
      void handle(req, res).catch((err: unknown) => {
        log.warn({ err: errorMessage(err), url: req.url }, "kubelet request failed");
        if (!res.headersSent) reply(res, 500, `procnode: ${errorMessage(err)}`);
        else res.destroy();
      });
    },
  );
  // A refused handshake (no certificate, another CA) is the control working, not an error.
  server.on("tlsClientError", (err) => log.debug({ err: err.message }, "TLS client refused"));

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const cert = (req.socket as TLSSocket).getPeerCertificate();
    const cn = cert.subject?.CN;
    const user = Array.isArray(cn) ? cn[0] : cn;
    const org = cert.subject?.O;
    const groups = org === undefined ? [] : Array.isArray(org) ? org : [org];
    if (!user) return reply(res, 401, "Unauthorized: a client certificate with a CN is required");
    if (!(await authorize(user, groups)))
      return reply(
        res,
        403,
        `Forbidden (user=${user}, verb=get, resource=nodes, subresource=proxy, name=${opts.nodeName})`,
      );
    const url = new URL(req.url ?? "/", "https://procnode");
    const m = /^\/containerLogs\/([^/]+)\/([^/]+)\/([^/]+)$/.exec(url.pathname);
    if (req.method !== "GET" || !m)
      return reply(res, 404, `procnode serves only GET /containerLogs/{ns}/{pod}/{container}`);
    let ns: string, pod: string, container: string;
    let q;
    try {
      [ns, pod, container] = m.slice(1).map((s) => decodeURIComponent(s)) as [
        string,
        string,
        string,
      ];
      q = parseLogQuery(url.searchParams);
    } catch (err) {
      if (err instanceof LogQueryError) return reply(res, 400, err.message);
      if (err instanceof URIError) return reply(res, 400, "the path is not valid percent-encoding");
      throw err;
    }
    const found = opts.lookup(ns, pod, container);
    if (found === "pod") return reply(res, 404, `pod "${pod}" does not exist`);
    if (found === "container")
      return reply(res, 404, `container "${container}" not found in pod "${pod}"`);
    const src = q.previous ? found.previous() : found.current();
    if (!src)
      return reply(
        res,
        400,
        q.previous
          ? `previous terminated container "${container}" in pod "${pod}" not found`
          : `container "${container}" in pod "${pod}" is waiting to start`,
      );
    res.writeHead(200, { "content-type": "text/plain; charset=utf-8" });
    res.flushHeaders();
    const aborted = new AbortController();
    res.once("close", () => aborted.abort());
    await streamLogs(src, q, (text) => writeOrWait(res, text), aborted.signal);
    res.end();
  }

  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(opts.port ?? 0, "127.0.0.1", () => resolve());
  });
  const addr = server.address();
  const port = typeof addr === "object" && addr ? addr.port : 0;
  log.info({ port }, "kubelet API listening");
  return {
    port,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/**
 * Writes, and resolves once the client can take more. Both listeners go when either fires: a long
 * follow to a slow client waits thousands of times, and left-over "close" listeners would pile up.
 */
export function writeOrWait(res: ServerResponse, text: string): Promise<void> {
  if (res.write(text) || res.destroyed) return Promise.resolve();
  return new Promise<void>((resolve) => {
    const done = () => {
      res.off("drain", done);
      res.off("close", done);
      resolve();
    };
    res.on("drain", done);
    res.on("close", done);
  });
}

function reply(res: ServerResponse, status: number, message: string): void {
  res.writeHead(status, { "content-type": "text/plain; charset=utf-8" });
  res.end(message);
}
