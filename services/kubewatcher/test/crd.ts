import { writeFileSync } from "node:fs";
import path from "node:path";
import type { KubeHarness } from "./harness";

/** Writes `obj` as JSON into the k8s-lite directory, for kubectl -f. */
export function writeTemp(h: KubeHarness, name: string, obj: unknown): string {
  const file = path.join(h.k.dir, name);
  writeFileSync(file, JSON.stringify(obj));
  return file;
}

/** The CRD of `widgets.example.com` (kind Widget, namespaced, v1). */
export function applyWidgetCrd(h: KubeHarness): void {
  const file = writeTemp(h, "widget-crd.json", {
    apiVersion: "apiextensions.k8s.io/v1",
    kind: "CustomResourceDefinition",
    metadata: { name: "widgets.example.com" },
    spec: {
      group: "example.com",
      scope: "Namespaced",
      names: { plural: "widgets", singular: "widget", kind: "Widget" },
      versions: [
        {
          name: "v1",
          served: true,
          storage: true,
          schema: {
            openAPIV3Schema: { type: "object", "x-kubernetes-preserve-unknown-fields": true },
          },
        },
      ],
    },
  });
  const r = h.k.kubectl("apply", "-f", file);
  if (r.status !== 0) throw new Error(`CRD: ${r.stderr}`);
}
