import type { z } from "zod";
import { FizzError, type WireError } from "./errors";
import * as M from "./messages";
import { DeadLetter, Invocation } from "./invocation";

/**
 * Every message on the bus is an envelope `{v, type, sender, ts, data}`. A codec encodes one
 * message type and, on decode, checks the envelope version, the type string and the data schema,
 * so a malformed message fails at the boundary with MALFORMED_MESSAGE, never inside a handler.
 */
export const ENVELOPE_VERSION = 1;
export const ERROR_TYPE = "error.v1";

export interface Envelope<T> {
  v: typeof ENVELOPE_VERSION;
  type: string;
  sender: string;
  ts: number;
  data: T;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** T is the decoded (defaults applied) shape; I what a sender may pass (defaults optional). */
export interface Codec<T, I = T> {
  readonly type: string;
  encode(data: I, sender: string): Uint8Array;
  /** Decodes and validates; throws FizzError MALFORMED_MESSAGE, or the remote error for an error envelope. */
  decode(bytes: Uint8Array): Envelope<T>;
}

export function codec<S extends z.ZodType>(
  type: string,
  schema: S,
): Codec<z.output<S>, z.input<S>> {
  return {
    type,
    encode(data, sender) {
      const env: Envelope<z.input<S>> = { v: ENVELOPE_VERSION, type, sender, ts: Date.now(), data };
      return encoder.encode(JSON.stringify(env));
    },
    decode(bytes) {
      const raw = parseEnvelope(bytes);
      if (raw.type === ERROR_TYPE) throw FizzError.fromWire(raw.data);
      if (raw.type !== type) {
        throw new FizzError("MALFORMED_MESSAGE", `expected a ${type} message, got ${raw.type}`, {
          field: "type",
        });
      }
      const parsed = schema.safeParse(raw.data);
      if (!parsed.success) {
        const issue = parsed.error.issues[0];
        const field = issue ? ["data", ...issue.path.map(String)].join(".") : "data";
        throw new FizzError(
          "MALFORMED_MESSAGE",
          `${type}: ${field}: ${issue?.message ?? "invalid"}`,
          { field },
        );
      }
      return {
        v: ENVELOPE_VERSION,
        type: raw.type,
        sender: raw.sender,
        ts: raw.ts,
        data: parsed.data,
      };
    },
  };
}

interface RawEnvelope {
  v: number;
  type: string;
  sender: string;
  ts: number;
  data: unknown;
}

function parseEnvelope(bytes: Uint8Array): RawEnvelope {
  let value: unknown;
  try {
    value = JSON.parse(decoder.decode(bytes));
  } catch (err) {
    throw new FizzError("MALFORMED_MESSAGE", "message is not JSON", { cause: err });
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new FizzError("MALFORMED_MESSAGE", "message is not an envelope object");
  }
  const e = value as Record<string, unknown>;
  if (e.v !== ENVELOPE_VERSION) {
    throw new FizzError("MALFORMED_MESSAGE", `unsupported envelope version ${String(e.v)}`, {
      field: "v",
    });
  }
  if (typeof e.type !== "string")
    throw new FizzError("MALFORMED_MESSAGE", "envelope has no type", { field: "type" });
  if (typeof e.sender !== "string") {
    throw new FizzError("MALFORMED_MESSAGE", "envelope has no sender", { field: "sender" });
  }
  if (typeof e.ts !== "number")
    throw new FizzError("MALFORMED_MESSAGE", "envelope has no ts", { field: "ts" });
  if (!("data" in e))
    throw new FizzError("MALFORMED_MESSAGE", "envelope has no data", { field: "data" });
  return { v: e.v, type: e.type, sender: e.sender, ts: e.ts, data: e.data };
}

/** An error reply: the requester's codec.decode rebuilds and throws it. */
export function encodeError(err: FizzError, sender: string): Uint8Array {
  const env: Envelope<WireError> = {
    v: ENVELOPE_VERSION,
    type: ERROR_TYPE,
    sender,
    ts: Date.now(),
    data: err.toWire(),
  };
  return encoder.encode(JSON.stringify(env));
}

export interface RpcContract<Req, Res, ReqIn = Req, ResIn = Res> {
  request: Codec<Req, ReqIn>;
  reply: Codec<Res, ResIn>;
}

function rpc<A extends z.ZodType, B extends z.ZodType>(
  name: string,
  req: A,
  res: B,
): RpcContract<z.output<A>, z.output<B>, z.input<A>, z.input<B>> {
  return { request: codec(`${name}.request.v1`, req), reply: codec(`${name}.reply.v1`, res) };
}

/** One codec per subject. Request/reply subjects have a contract of two codecs. */
export const Codecs = {
  registryChanged: codec("registry.changed.v1", M.RegistryChanged),
  registryGet: rpc("registry.get", M.RegistryGetRequest, M.RegistryGetReply),
  registryList: rpc("registry.list", M.RegistryListRequest, M.RegistryListReply),
  registryBuildReport: rpc("registry.build.report", M.BuildReport, M.BuildReportReply),
  registryConfigRead: rpc("registry.config.read", M.ConfigReadRequest, M.ConfigReadReply),
  buildRequested: codec("builds.requested.v1", M.BuildRequest),
  schedulerLease: rpc("scheduler.lease", M.LeaseRequest, M.LeaseReply),
  schedulerReport: codec("scheduler.report.v1", M.UsageReport),
  schedulerInstances: codec("scheduler.instances.v1", M.InstancesChanged),
  gatewaySync: rpc("gateway.sync", M.GatewaySyncRequest, M.GatewaySyncReply),
  gatewayPresence: codec("gateway.presence.v1", M.GatewayPresence),
  poolkeeperSpecialize: rpc("poolkeeper.specialize", M.SpecializeRequest, M.SpecializeReply),
  poolkeeperRetire: rpc("poolkeeper.retire", M.RetireRequest, M.RetireReply),
  poolkeeperList: rpc("poolkeeper.list", M.PoolkeeperListRequest, M.PoolkeeperListReply),
  poolkeeperInstance: codec("poolkeeper.instance.v1", M.InstanceEventMessage),
  logs: codec("logs.v2", M.LogLine),
  gatewayStats: rpc("gateway.stats", M.GatewayStatsRequest, M.GatewayStatsReply),
  invoke: codec("invoke.v1", Invocation),
  dead: codec("dead.v1", DeadLetter),
} as const;
