import { spawn, type ChildProcess } from "node:child_process";
import { readFileSync } from "node:fs";
import { freePort, portOpen, waitFor } from "@fizz/testkit";

/** A second gateway of a running platform, for a side-by-side figure; stop() ends it. */
export interface GatewayCopy {
  url: string;
  pid: number;
  stop(): Promise<void>;
}

/**
 * Starts a copy of the platform's gateway process (`pid`): the same command and environment (read
 * from /proc: its NATS credentials included, this process's own child), its own ports, and `env`
 * on top. It serves the same routes from the same leases, so it can stand next to the original
 * in front of the same instance (the warm section's other front end: FIZZ_GATEWAY_FRONTEND=node).
 */
export async function startGatewayCopy(
  pid: number,
  env: Record<string, string>,
  cwd: string,
): Promise<GatewayCopy> {
  const argv = readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").filter(Boolean);
  const base = Object.fromEntries(
    readFileSync(`/proc/${pid}/environ`, "utf8")
      .split("\0")
      .filter(Boolean)
      .map((kv) => [kv.slice(0, kv.indexOf("=")), kv.slice(kv.indexOf("=") + 1)]),
  );
  const [bin, ...args] = argv;
  if (bin === undefined) throw new Error(`no command line for the gateway (pid ${pid})`);
  const port = await freePort();
  const child: ChildProcess = spawn(bin, args, {
    env: {
      ...base,
      ...env,
      FIZZ_GATEWAY_PORT: String(port),
      FIZZ_GATEWAY_OPS_PORT: String(await freePort()),
    },
    // Its stdin open: a platform service exits when its parent closes it (FIZZ_PARENT_STDIN).
    stdio: ["pipe", "ignore", "ignore"],
    cwd,
  });
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  try {
    await waitFor(() => portOpen(port), { timeoutMs: 20_000 });
  } catch (err) {
    child.kill("SIGKILL");
    throw err;
  }
  return {
    url: `http://127.0.0.1:${port}`,
    pid: child.pid!,
    stop: async () => {
      child.kill("SIGTERM");
      const killer = setTimeout(() => child.kill("SIGKILL"), 5000);
      await exited;
      clearTimeout(killer);
    },
  };
}
