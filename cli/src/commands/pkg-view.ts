/** How packages look: the list's columns and `pkg info`'s details with the build log. */
import { reportEmpty, type Context } from "../context.js";
import { cell, formatBytes, NONE, printJson, renderTable } from "../output.js";
import { shortDigest } from "../package-ops.js";
import { renderObject, trailingCells } from "../present.js";
import type { ArchiveRef, PackageObject } from "../types.js";

export function printList(ctx: Context, items: PackageObject[], raw: unknown): void {
  if (ctx.output === "json") return printJson(ctx.stdout, raw);
  if (items.length === 0) return reportEmpty(ctx, "packages");
  const now = ctx.now();
  ctx.stdout.write(
    renderTable(
      ["NAME", "ENV", "BUILD", "SOURCE", "DEPLOYMENT", "REVISION", "AGE"],
      items.map((p) => [
        p.metadata.name,
        cell(p.spec.environment),
        p.spec.source ? cell(p.status?.buildState) : "(none)",
        archiveCell(p.spec.source),
        archiveCell(p.status?.deployment ?? p.spec.deployment),
        ...trailingCells(p, now),
      ]),
    ),
  );
}

function archiveCell(ref: ArchiveRef | undefined): string {
  return ref ? formatBytes(ref.size) : NONE;
}

function archiveInfo(ref: ArchiveRef | undefined): string {
  if (!ref) return NONE;
  const files = ref.files === undefined ? "" : `, ${ref.files} files`;
  return `${ref.digest} (${formatBytes(ref.size)}${files})`;
}

export function renderPackage(p: PackageObject, now: number): string {
  const status = p.status;
  const rows: Array<[string, string]> = [
    ["Environment", cell(p.spec.environment)],
    ["Source", archiveInfo(p.spec.source)],
  ];
  if (p.spec.source) {
    rows.push(["Build command", p.spec.buildCommand ?? "(the environment's default build)"]);
    rows.push(["Build state", cell(status?.buildState)]);
    rows.push(["Built source", status?.sourceDigest ? shortDigest(status.sourceDigest) : NONE]);
  }
  rows.push(["Deployment", archiveInfo(status?.deployment ?? p.spec.deployment)]);
  if (status?.message) rows.push(["Message", status.message]);
  if (status?.startedAt) rows.push(["Build started", status.startedAt]);
  if (status?.finishedAt) rows.push(["Build finished", status.finishedAt]);
  const log = status?.buildLog?.replace(/\s+$/, "") ?? "";
  const details = renderObject(p, rows, now);
  return log ? `${details}\nBuild log:\n${log}\n` : details;
}
