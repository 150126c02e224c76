// Starting one platform process (a service, nats-server, redis-server) for the launcher
// (platform.mjs): its process group, how it dies with the launcher, and its output as lines.
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { ROOT } from "./prereqs.mjs";

const SETPRIV =
  process.platform === "linux" && existsSync("/usr/bin/setpriv") ? "/usr/bin/setpriv" : undefined;

/**
 * @param {string} name
 * @param {string} cmd
 * @param {string[]} args
 * @param {NodeJS.ProcessEnv} env
 * @param {boolean} exitWithStdin  the child watches its stdin (a service), else it gets setpriv's
 *   parent-death signal
 * @param {((name: string, line: string) => void) | undefined} onLog  its output, line by line
 *   (default: inherited)
 */
export function spawnPlatformChild(name, cmd, args, env, exitWithStdin, onLog) {
  // nats-server and redis-server do not watch stdin: on Linux, setpriv's parent-death signal
  // stops them when this launcher dies, even by SIGKILL (it survives the exec).
  if (!exitWithStdin && SETPRIV)
    [cmd, args] = [SETPRIV, ["--pdeathsig", "SIGTERM", "--", cmd, ...args]];
  const child = spawn(cmd, args, {
    cwd: ROOT,
    env,
    // Its own process group: a terminal's Ctrl-C (SIGINT to the whole foreground group) reaches
    // only this launcher, which stops the services before the NATS and Redis they drain into.
    // Sent to every process at once, Redis would go first and services would hang on it.
    // Dying with the launcher does not depend on the group (stdin pipe, parent-death signal).
    detached: exitWithStdin || SETPRIV !== undefined,
    // stdin is a pipe the child watches: if this launcher dies, even by SIGKILL, it closes and
    // the services stop, so nothing is left orphaned.
    stdio: [
      exitWithStdin ? "pipe" : "ignore",
      onLog ? "pipe" : "inherit",
      onLog ? "pipe" : "inherit",
    ],
  });
  if (onLog) {
    for (const stream of [child.stdout, child.stderr]) {
      let buf = "";
      // Piped above whenever onLog is set.
      stream?.on("data", (/** @type {Buffer} */ d) => {
        buf += d.toString();
        let i;
        while ((i = buf.indexOf("\n")) >= 0) {
          onLog(name, buf.slice(0, i));
          buf = buf.slice(i + 1);
        }
      });
    }
  }
  return child;
}
