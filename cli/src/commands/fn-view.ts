/** How functions look: the list's columns and `fn get`'s details. */
import { reportEmpty, type Context } from "../context.js";
import { cell, formatBytes, NONE, printJson, renderTable } from "../output.js";
import { renderObject, trailingCells } from "../present.js";
import type { FunctionObject } from "../types.js";
import { functionUrl } from "./fn-test.js";

export function printList(ctx: Context, items: FunctionObject[], raw: unknown): void {
  if (ctx.output === "json") return printJson(ctx.stdout, raw);
  if (items.length === 0) return reportEmpty(ctx, "functions");
  const now = ctx.now();
  ctx.stdout.write(
    renderTable(
      ["NAME", "ENV", "CODE", "CONCURRENCY", "MIN", "MAX", "TIMEOUT", "REVISION", "AGE"],
      items.map((f) => [
        f.metadata.name,
        cell(f.spec.environment),
        f.spec.package ? `pkg:${f.spec.package.name}` : cell(f.spec.code?.filename),
        cell(f.spec.concurrency),
        cell(f.spec.minInstances),
        cell(f.spec.maxInstances),
        seconds(f.spec.timeoutSeconds),
        ...trailingCells(f, now),
      ]),
    ),
  );
}

export function renderFunction(ctx: Context, f: FunctionObject): string {
  const { code } = f.spec;
  const codeInfo = [code?.size !== undefined ? `${code.size} bytes` : undefined, code?.digest]
    .filter((part) => part !== undefined)
    .join(", ");
  return renderObject(
    f,
    [
      ["Environment", cell(f.spec.environment)],
      f.spec.package
        ? ["Package", packageInfo(f.spec.package)]
        : ["Code", code ? `${code.filename}${codeInfo ? ` (${codeInfo})` : ""}` : NONE],
      ["Entrypoint", f.spec.entrypoint ?? "(runtime default)"],
      // Env values are the user's own settings (secrets belong in --secret), so they are shown.
      [
        "Env",
        Object.entries(f.spec.env ?? {})
          .map(([k, v]) => `${k}=${v}`)
          .join(", ") || NONE,
      ],
      ["Secrets", f.spec.secrets?.join(", ") || NONE],
      ["ConfigMaps", f.spec.configmaps?.join(", ") || NONE],
      [
        "Concurrency",
        f.spec.concurrency === undefined ? "(environment default)" : String(f.spec.concurrency),
      ],
      ["Instances", `min ${cell(f.spec.minInstances)}, max ${cell(f.spec.maxInstances)}`],
      ["Timeout", seconds(f.spec.timeoutSeconds)],
      ["Idle timeout", seconds(f.spec.idleTimeoutSeconds)],
      ["Invoke", functionUrl(ctx, f.metadata.name)],
    ],
    ctx.now(),
  );
}

function packageInfo(pkg: NonNullable<FunctionObject["spec"]["package"]>): string {
  const d = pkg.deployment;
  return d ? `${pkg.name} (deployment ${d.digest}, ${formatBytes(d.size)})` : pkg.name;
}

function seconds(value: number | undefined): string {
  return value === undefined ? NONE : `${value}s`;
}
