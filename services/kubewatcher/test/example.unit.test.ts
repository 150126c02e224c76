import { copyFileSync, mkdtempSync, rmSync } from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import path from "node:path";
import { expect } from "chai";

const EXAMPLE = path.resolve(import.meta.dirname, "../../../examples/kube-events/kube-events.js");

type Fn = (ctx: unknown) => Promise<{ status: number; body: { text: string; posted: boolean } }>;

/** The example as the Node runtime loads it: a CommonJS file (the repo's package.json says ESM). */
function loadExample(): { fn: Fn; cleanup(): void } {
  const dir = mkdtempSync(path.join(tmpdir(), "fizz-kube-events-"));
  const file = path.join(dir, "kube-events.cjs");
  copyFileSync(EXAMPLE, file);
  return { fn: createRequire(file)(file) as Fn, cleanup: () => rmSync(dir, { recursive: true }) };
}

function context(
  headers: Record<string, string>,
  body: unknown,
  query: Record<string, string> = {},
) {
  return { headers, body, query, method: "POST", path: "/" };
}

describe("examples/kube-events", () => {
  const example = loadExample();
  const fn = example.fn;
  after(() => example.cleanup());

  it("turns a pod event into a chat message and POSTs it to the webhook", async () => {
    const received: unknown[] = [];
    const server = http.createServer((req, res) => {
      let text = "";
      req.on("data", (d: Buffer) => (text += d.toString()));
      req.on("end", () => {
        received.push(JSON.parse(text));
        res.end("ok");
      });
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`;
    try {
      const out = await fn(
        context(
          { "x-kubernetes-event-type": "ADDED", "x-kubernetes-object-type": "Pod" },
          { metadata: { name: "x", namespace: "default" }, status: { phase: "Running" } },
          { url },
        ),
      );
      expect(out).to.deep.equal({
        status: 200,
        body: { text: "pod default/x ADDED (Running)", posted: true },
      });
      expect(received).to.deep.equal([{ text: "pod default/x ADDED (Running)" }]);
    } finally {
      server.close();
    }
  });

  it("describes services and waiting pods, and only answers when there is no webhook", async () => {
    const svc = await fn(
      context(
        { "x-kubernetes-event-type": "DELETED", "x-kubernetes-object-type": "Service" },
        { metadata: { name: "web", namespace: "shop" }, spec: { ports: [{ port: 80 }] } },
      ),
    );
    expect(svc.body).to.deep.equal({
      text: "service shop/web DELETED (ClusterIP 80/TCP)",
      posted: false,
    });
    const pod = await fn(
      context(
        { "x-kubernetes-event-type": "MODIFIED", "x-kubernetes-object-type": "Pod" },
        {
          metadata: { name: "api", namespace: "shop" },
          status: {
            phase: "Running",
            containerStatuses: [{ state: { waiting: { reason: "CrashLoopBackOff" } } }],
          },
        },
      ),
    );
    expect(pod.body.text).to.equal("pod shop/api MODIFIED (CrashLoopBackOff)");
  });
});
