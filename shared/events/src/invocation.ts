import { z } from "zod";
import { dnsLabel } from "./names";
import { WireErrorSchema } from "./wire-error";

/**
 * Bus-originated invocations. Every one is a message on the JetStream stream FIZZ_INVOCATIONS
 * (`Streams.invocations`, subjects `<prefix>.invoke.<ns>.<fn>`), consumed by gateway invokers through one shared durable consumer: at least
 * once, acknowledged after the call finished and its result was delivered. `callId` lets a
 * function (and the status store) deduplicate a redelivery.
 */
export const Streams = {
  /** Subjects `<prefix>.invoke.>`. */
  invocations: "FIZZ_INVOCATIONS",
  /**
   * Subjects `<prefix>.dead.>`: invocations that still failed after `maxRetries` retries, or
   * failed in a way no retry can mend.
   */
  dead: "FIZZ_DEAD",
} as const;

/** JetStream key-value bucket of async call status (`GET /async-function/<name>/<call-id>`). */
export const CALLS_BUCKET = "fizz_calls";

export const InvocationSource = z.enum(["async", "mqt", "timer", "watch"]);
export type InvocationSource = z.infer<typeof InvocationSource>;

export const Invocation = z.object({
  callId: z.string().min(1).max(192),
  namespace: dnsLabel,
  function: dnsLabel,
  source: InvocationSource,
  /** The trigger that produced it (mqt, timer, watch), for logs and metrics. */
  trigger: z.string().optional(),
  method: z.string().min(1).max(16),
  /** Path (and query) the function sees. */
  path: z.string().startsWith("/").default("/"),
  headers: z.record(z.string(), z.string()).default({}),
  /** Body, base64. */
  body: z.string().default(""),
  callbackUrl: z.string().url().optional(),
  responseSubject: z.string().optional(),
  errorSubject: z.string().optional(),
  maxRetries: z.number().int().min(0).max(100).default(3),
  createdAt: z.number(),
});
export type Invocation = z.infer<typeof Invocation>;

export const CallState = z.enum(["queued", "running", "succeeded", "failed"]);
export type CallState = z.infer<typeof CallState>;

export const CallStatus = z.object({
  callId: z.string(),
  namespace: dnsLabel,
  function: dnsLabel,
  state: CallState,
  attempts: z.number().int().nonnegative(),
  /** The function's HTTP status, once it answered. */
  status: z.number().int().optional(),
  headers: z.record(z.string(), z.string()).optional(),
  /** The function's response body, base64 (bounded by the invoker). */
  body: z.string().optional(),
  error: WireErrorSchema.optional(),
  /** Why the X-Callback-Url got no result (refused by the outbound guard, or undeliverable). */
  callbackError: WireErrorSchema.optional(),
  createdAt: z.number(),
  updatedAt: z.number(),
});
export type CallStatus = z.infer<typeof CallStatus>;

export const DeadLetter = z.object({
  invocation: Invocation,
  error: WireErrorSchema,
  attempts: z.number().int().positive(),
  status: z.number().int().optional(),
});
export type DeadLetter = z.infer<typeof DeadLetter>;
