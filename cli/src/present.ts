/** The parts of the human views that every kind shares: identity first, bookkeeping last. */
import { cell, formatAge, formatTime, renderDetails } from "./output.js";
import type { ApiObject } from "./types.js";

/** The detail view of `get`: name and namespace, the kind's own rows, then revision and times. */
export function renderObject(
  obj: ApiObject<unknown>,
  specRows: Array<[string, string]>,
  now: number,
): string {
  const { metadata } = obj;
  const labels = Object.entries(metadata.labels ?? {}).map(([k, v]) => `${k}=${v}`);
  return renderDetails([
    ["Name", metadata.name],
    ["Namespace", metadata.namespace],
    ...specRows,
    ...(labels.length > 0 ? [["Labels", labels.join(", ")] as [string, string]] : []),
    ["Revision", cell(metadata.revision)],
    ["Created", formatTime(metadata.createdAt, now)],
    ["Updated", formatTime(metadata.updatedAt, now)],
  ]);
}

/** The last two columns of every list: REVISION, AGE. */
export function trailingCells(obj: ApiObject<unknown>, now: number): string[] {
  return [cell(obj.metadata.revision), formatAge(obj.metadata.createdAt, now)];
}
