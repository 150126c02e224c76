import { randomBytes } from "node:crypto";
import { chmodSync, mkdirSync, readdirSync, rmSync } from "node:fs";
import net from "node:net";
import path from "node:path";
import { SpawnerError } from "./spawner-child";

/**
 * The longest socket path Node binds as given: libuv copies the path into sun_path (108 bytes)
 * with its NUL, and binds a longer one cut short, silently (Node 20), where the spawner's connect
 * refuses it ("path too long"), which failed every spawn.
 */
const MAX_SOCKET_PATH = 107;
/** `<pid>-<random>.sock`: one socket per spawner, and whose it is (a dead pid's is removed). */
const SOCKET_NAME = /^(\d+)-[0-9a-f]{8}\.sock$/;

/**
 * Listens on a socket of this client's own in `dir` (made 0700: only root, the spawner, connects).
 */
export async function listenInOwnSocket(
  dir: string,
): Promise<{ server: net.Server; sockPath: string }> {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  chmodSync(dir, 0o700);
  // Its own name: another spawner may use the directory (two backends on one work dir, two
  // poolkeepers), and one fixed name made the later start take it over (the earlier spawner's
  // children's streams went to the other client, which dropped them) and either close remove it.
  removeDeadOnes(dir);
  const sockPath = path.join(dir, `${process.pid}-${randomBytes(4).toString("hex")}.sock`);
  if (Buffer.byteLength(sockPath) > MAX_SOCKET_PATH)
    throw new SpawnerError(
      "SPAWNER_FAILED",
      `the spawner's socket path ${sockPath} is longer than a Unix socket address takes (${MAX_SOCKET_PATH} bytes): use a shorter work directory`,
    );
  const server = net.createServer();
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(sockPath, () => resolve());
  });
  return { server, sockPath };
}

/** Removes the sockets of spawner clients whose process is gone (one that died without close). */
function removeDeadOnes(dir: string): void {
  for (const name of readdirSync(dir)) {
    const pid = Number(SOCKET_NAME.exec(name)?.[1]);
    if (pid > 0 && !pidAlive(pid)) rmSync(path.join(dir, name), { force: true });
  }
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}
