// Typed reads of JSON answers in tests. A test names the shape it expects and fails with the body
// it got when the answer lacks that shape, instead of reading fields off `any`.
import { AssertionError } from "node:assert";
import { WireErrorSchema, type WireError } from "@fizz/events";

export type JsonObject = Record<string, unknown>;

export function isJsonObject(value: unknown): value is JsonObject {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** `value` as a JSON object; fails the test (showing the value) when it is anything else. */
export function jsonObject(value: unknown): JsonObject {
  if (isJsonObject(value)) return value;
  throw new AssertionError({ message: `expected a JSON object, got ${JSON.stringify(value)}` });
}

/**
 * The error of a platform error answer, `{"error": {code, message, retryable, field?}}`, checked
 * against the shared wire schema (so a known code, a message and `retryable` are all required).
 */
export function wireError(value: unknown): WireError {
  const parsed = WireErrorSchema.safeParse(isJsonObject(value) ? value.error : undefined);
  if (parsed.success) return parsed.data;
  throw new AssertionError({
    message: `expected a Fizz error answer, got ${JSON.stringify(value)}: ${parsed.error.message}`,
  });
}
