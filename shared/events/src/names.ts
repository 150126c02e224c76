import { z } from "zod";

/** DNS-1123 label: names become pod labels and NATS subject tokens, so they must be this strict. */
export const DNS1123_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;

export const dnsLabel = z
  .string()
  .max(63, "must be at most 63 characters")
  .regex(
    DNS1123_LABEL,
    "must be a DNS-1123 label: lower-case letters, digits and '-', starting and ending with a letter or digit",
  );

export const DEFAULT_NAMESPACE = "default";

export function isDnsLabel(value: string): boolean {
  return value.length <= 63 && DNS1123_LABEL.test(value);
}
