/** Runs the real CLI in-process with captured output, pointed at fake servers. */
import { tmpdir } from "node:os";
import { run } from "../../src/main.js";

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
  /** stdout as bytes, for output that must be byte-exact (code, function responses). */
  stdoutBytes: Buffer;
}

/** The fixed clock of every test run: objects created at FIVE_MINUTES_AGO show AGE 5m. */
export const NOW = Date.parse("2025-01-01T12:00:00Z");
export const FIVE_MINUTES_AGO = "2025-01-01T11:55:00.000Z";

export async function fizz(
  argv: string[],
  urls: { registry?: string; gateway?: string } = {},
  /** Extra environment, and the directory the token search starts in (default: the temp dir, so
   * a `.fizz/` of a platform running in the repo never leaks into a test). */
  more: { env?: Record<string, string>; cwd?: string } = {},
): Promise<CliResult> {
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  const sink = (chunks: Buffer[]) => ({
    write(chunk: string | Uint8Array) {
      chunks.push(Buffer.from(chunk));
      return true;
    },
  });
  const code = await run(argv, {
    env: {
      ...(urls.registry ? { FIZZ_REGISTRY_URL: urls.registry } : {}),
      ...(urls.gateway ? { FIZZ_GATEWAY_URL: urls.gateway } : {}),
      ...more.env,
    },
    cwd: more.cwd ?? tmpdir(),
    stdout: sink(out),
    stderr: sink(err),
    now: () => NOW,
  });
  const stdoutBytes = Buffer.concat(out);
  return {
    code,
    stdout: stdoutBytes.toString("utf8"),
    stderr: Buffer.concat(err).toString("utf8"),
    stdoutBytes,
  };
}

const KINDS = {
  environments: "Environment",
  functions: "Function",
  httptriggers: "HttpTrigger",
  mqtriggers: "MessageQueueTrigger",
  timetriggers: "TimeTrigger",
  watchtriggers: "WatchTrigger",
  secrets: "Secret",
  configmaps: "ConfigMap",
};

/** An object the way the registry answers it. */
export function apiObject<Spec extends object>(
  kind: keyof typeof KINDS,
  name: string,
  spec: Spec,
  opts: { namespace?: string; revision?: number } = {},
) {
  return {
    apiVersion: "fizz.dev/v1",
    kind: KINDS[kind],
    metadata: {
      namespace: opts.namespace ?? "default",
      name,
      uid: `uid-${name}`,
      revision: opts.revision ?? 1,
      labels: {},
      createdAt: FIVE_MINUTES_AGO,
      updatedAt: FIVE_MINUTES_AGO,
    },
    spec,
  };
}

export function apiError(code: string, message: string, field?: string) {
  return { error: { code, message, ...(field ? { field } : {}), retryable: false } };
}

/** A package as the registry answers it: the spec a client wrote and the status it owns. */
export function pkgObject(
  name: string,
  spec: Record<string, unknown>,
  status: Record<string, unknown> | undefined,
  revision = 1,
) {
  return {
    ...apiObject("functions", name, spec, { revision }),
    kind: "Package",
    ...(status ? { status } : {}),
  };
}
