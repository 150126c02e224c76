import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import {
  closeSync,
  constants,
  existsSync,
  fstatSync,
  openSync,
  readFileSync,
  statSync,
} from "node:fs";
import path from "node:path";
import type { Logger } from "@fizz/kit";
import { prepareInstancesDir, traversable, wrapCommand } from "./isolation";
import { resolveOnPath, type Interpreters } from "./runtime-commands";

/** What prepareHost found out about the host, for the launches that follow. */
export interface PreparedHost {
  /** The Node runtime as one built file (runtimes/node/prepare.mjs), kept current. */
  nodeBuild: NodeBuild;
}

/**
 * A build and what it was checked against: its inputs, unchanged since `since`. Dates are status
 * changes (ctime), not modification dates: an edit that keeps or back-dates the modification date
 * (cp -p, tar x, touch -r, an editor restoring a backup) still sets ctime to the kernel's clock,
 * and nothing but a clock change can set it otherwise.
 */
interface Checked {
  file: string;
  /** The build's own inode and ctime when checked: replaced, rewritten or removed since, it is checked again. */
  fileIno: number;
  fileCtime: number;
  inputs: string[];
  since: number;
  /** Its V8 code cache and the loader that starts the build with it, when one was verified. */
  cache?: { file: string; ino: number; ctime: number; loader: string } | undefined;
}

/**
 * The Node runtime's one-file build, as of the last check, and kept so: entry() stats its inputs
 * (~20 stats, tens of µs, per spawn), and a source modified after the check (a developer editing
 * runtimes/node while the platform runs) means the sources start instead, while the build is
 * redone in the background; the next spawns use the new one. Conservative: a touched but unchanged
 * file only costs a check that finds the hash current.
 */
export class NodeBuild {
  private checked: Checked | undefined;
  private redoing: Promise<void> | undefined;
  /** After a failed build: when a spawn may try again (undefined: not at all). */
  private retryAt: number | undefined;

  constructor(
    private readonly runtimesDir: string,
    private readonly log: Logger,
    /** How long after a failed build a spawn tries again; 30 s unless set (tests). */
    private readonly retryMs = 30_000,
    /** util-linux setpriv, for the build's parent-death signal (parentDeathSetpriv). */
    private readonly setpriv = parentDeathSetpriv(undefined),
  ) {}

  /** Builds (or checks) once; resolves when done, whatever the outcome. */
  check(): Promise<void> {
    this.redoing ??= buildNodeRuntime(this.runtimesDir, this.log, this.setpriv)
      .then((outcome) => {
        this.checked = typeof outcome === "object" ? outcome : undefined;
        // A build that failed (a source saved half-way, a check cut off on a busy host) is tried
        // again by a later spawn, or the sources would run until the poolkeeper restarts; one
        // this host cannot make (no esbuild, no prepare.mjs) is not.
        this.retryAt = outcome === "failed" ? Date.now() + this.retryMs : undefined;
      })
      .finally(() => (this.redoing = undefined));
    return this.redoing;
  }

  /** Resolves once no check is under way: the backend's close() waits, so its child is gone. */
  async settled(): Promise<void> {
    while (this.redoing) await this.redoing;
  }

  /**
   * The file to start, or undefined (start the sources) while none is known current: the loader
   * that runs the build with its code cache, or the build alone when there is no cache or the one
   * there is not the one checked (replaced, its mode or owner changed: a cache is bytecode every
   * instance runs, so it is used only as verified; never a reason not to start).
   */
  entry(): string | undefined {
    const c = this.checked;
    if (!c) {
      if (this.retryAt !== undefined && Date.now() >= this.retryAt) {
        this.retryAt = undefined;
        void this.check();
      }
      return undefined;
    }
    try {
      const file = statSync(c.file);
      const current =
        file.ino === c.fileIno &&
        file.ctimeMs === c.fileCtime &&
        c.inputs.every((f) => statSync(f).ctimeMs <= c.since);
      if (current) return this.withCache(c);
    } catch {
      // An input or the build gone: built again below.
    }
    this.checked = undefined;
    void this.check();
    return undefined;
  }

  private withCache(c: Checked): string {
    if (!c.cache) return c.file;
    try {
      const st = statSync(c.cache.file);
      if (st.ino === c.cache.ino && st.ctimeMs === c.cache.ctime) return c.cache.loader;
    } catch {
      // Gone: the build alone.
    }
    // Changed since its check: not used, and checked again (prepare.mjs makes it anew if it must).
    this.checked = { ...c, cache: undefined };
    void this.check();
    return c.file;
  }
}

/**
 * What the process backend does once before its first spawn: the instances directory, traversable
 * by instance uids but not listable; the Node runtime built into one file (an empty-pool start
 * then reads one file instead of ~17 modules, ~20-30 ms less); and, when instances run as other
 * uids (who cannot write next to the loader), the Python loader's bytecode compiled in advance, or
 * every cold start would compile it again.
 */
export async function prepareHost(opts: {
  workDir: string;
  runtimesDir: string;
  interpreters: Interpreters;
  /** Instances run as other uids than the poolkeeper's. */
  otherUids: boolean;
  log: Logger;
  /** FIZZ_SETPRIV; undefined: /usr/bin/setpriv when there is one (parentDeathSetpriv). */
  setpriv?: string | undefined;
}): Promise<PreparedHost> {
  const warn = (changed: string[]) => {
    if (changed.length > 0)
      opts.log.warn(
        { dirs: changed },
        "gave other users traverse (not read) permission on these directories, so instance uids can reach their work directories and the runtimes",
      );
  };
  // What instance uids must reach: the loaders and the interpreters running them.
  const interpreters: string[] = Object.values(opts.interpreters).map(
    (bin: string) => resolveOnPath(bin) ?? bin,
  );
  const needed = opts.otherUids
    ? [
        opts.runtimesDir,
        path.dirname(process.execPath),
        ...interpreters.map((p) => path.dirname(p)),
      ]
        .filter((p) => path.isAbsolute(p))
        // A path that is not there fails the spawn itself, with a clearer message.
        .map((p) => traversable(p).then(warn, () => undefined))
    : [];
  const nodeBuild = new NodeBuild(
    opts.runtimesDir,
    opts.log,
    undefined,
    parentDeathSetpriv(opts.setpriv),
  );
  await Promise.all([
    nodeBuild.check(),
    prepareInstancesDir(opts.workDir).then(warn),
    ...needed,
    opts.otherUids
      ? compilePython(opts.interpreters.python, opts.runtimesDir, opts.log)
      : undefined,
  ]);
  return { nodeBuild };
}

/** The build's own budget: esbuild takes well under a second; a hang must not block spawns. */
const NODE_BUILD_TIMEOUT_MS = 60_000;

/** FIZZ_SETPRIV's default (config.ts). */
const SETPRIV = "/usr/bin/setpriv";

/**
 * The setpriv that gives prepare.mjs its parent-death signal: the one configured, else the
 * default one when it is there (as a non-root user, the poolkeeper may run without any). Only
 * --pdeathsig and --no-new-privs are used, no uid change.
 */
export function parentDeathSetpriv(configured: string | undefined): string | undefined {
  return configured ?? (existsSync(SETPRIV) ? SETPRIV : undefined);
}

/**
 * The command line of prepare.mjs: through setpriv (same uid), so the kernel kills it when the
 * poolkeeper dies, even by SIGKILL, instead of leaving it to finish (or hang until its timeout,
 * which died with the poolkeeper) writing into runtimes/node/.build while a new poolkeeper starts
 * its own. Its one child, esbuild's service, reads its requests from a pipe of prepare.mjs's and
 * exits at its end of file, so it goes too. Without setpriv: started directly, as before.
 */
export function prepareCommand(script: string, setpriv: string | undefined): string[] {
  return wrapCommand([process.execPath, script], undefined, setpriv);
}

/**
 * Runs runtimes/node/prepare.mjs (a no-op when its stamp matches the sources) in a child of its
 * own: the poolkeeper loads neither esbuild nor the runtime's code. Any failure (no esbuild in a
 * slim install, a read-only runtimes directory) only costs the start-up time: the sources run.
 */
async function buildNodeRuntime(
  runtimesDir: string,
  log: Logger,
  setpriv: string | undefined,
): Promise<Checked | "failed" | undefined> {
  const script = path.join(runtimesDir, "node", "prepare.mjs");
  // A runtimes copy without the script (an older one): its sources, without a failed child.
  if (!existsSync(script)) return undefined;
  let why = "no result";
  // Another poolkeeper building from the same tree can rename its bundle over the one this check
  // vouched for before we look (built from older sources if it started before an edit): the
  // bytes found must be the ones vouched for. That race is a moment: asked again, twice at most.
  for (let attempt = 0; attempt < 3; attempt++) {
    const checked = await checkOnce(prepareCommand(script, setpriv));
    if ("file" in checked) return checked;
    why = checked.why;
    if (!checked.raced) break;
  }
  log.warn(
    { err: why },
    "could not build the node runtime into one file; instances start from its sources (slower cold starts)",
  );
  // prepare.mjs's reason when esbuild is absent (a slim install): no later try can do better.
  return why.startsWith("esbuild is not installed") ? undefined : "failed";
}

function checkOnce(command: string[]): Promise<Checked | { why: string; raced?: boolean }> {
  const [file, ...args] = command as [string, ...string[]];
  // Before the child reads anything: an edit after this instant is newer than the check.
  const since = Date.now();
  return new Promise((resolve) => {
    execFile(
      file,
      args,
      { timeout: NODE_BUILD_TIMEOUT_MS, maxBuffer: 1024 * 1024 },
      (err, stdout) => {
        const result = parseResult(stdout);
        const inputs = result?.ok === true ? stampInputs(result.file) : undefined;
        if (!inputs || typeof result?.file !== "string" || typeof result.sha256 !== "string")
          return resolve({ why: result?.reason ?? err?.message ?? "no result" });
        try {
          // The inode and ctime of the very bytes hashed: a later rename or write changes them.
          const found = readVerified(result.file);
          if (found.sha256 !== result.sha256)
            return resolve({ why: "the build changed under its check", raced: true });
          // A status change dated after the check's end (the clock stepped back) would look like
          // an edit at every spawn: its date is taken as the check's. Edits during the check are not.
          const done = Date.now();
          const dates = inputs.map((f) => statSync(f).ctimeMs).filter((m) => m > done);
          resolve({
            file: result.file,
            fileIno: found.ino,
            fileCtime: found.ctimeMs,
            inputs,
            since: Math.max(since, ...dates),
            cache: verifiedCache(result.cache),
          });
        } catch (e) {
          // Gone already: the sources.
          resolve({ why: (e as Error).message });
        }
      },
    );
  });
}

/**
 * The code cache prepare.mjs reported, with the inode and ctime of the bytes hashed, when they are
 * the ones it vouched for; otherwise none (the build starts without it).
 */
function verifiedCache(cache: unknown): Checked["cache"] {
  if (typeof cache !== "object" || cache === null) return undefined;
  const { file, sha256, loader } = cache as { file?: unknown; sha256?: unknown; loader?: unknown };
  if (typeof file !== "string" || typeof sha256 !== "string" || typeof loader !== "string")
    return undefined;
  try {
    const found = readVerified(file);
    return found.sha256 === sha256
      ? { file, ino: found.ino, ctime: found.ctimeMs, loader }
      : undefined;
  } catch {
    return undefined;
  }
}

/**
 * The file's SHA-256 with the inode and ctime of the same open file; throws unless it is a regular
 * file (not a link) owned by this uid or root and writable by neither group nor others: another
 * user able to write the build or its cache would choose the code of every instance.
 */
function readVerified(file: string): { sha256: string; ino: number; ctimeMs: number } {
  const fd = openSync(file, constants.O_RDONLY | constants.O_NOFOLLOW);
  try {
    const { ino, ctimeMs, uid, mode } = fstatSync(fd);
    const owner = process.getuid?.() ?? 0;
    if ((mode & constants.S_IFMT) !== constants.S_IFREG || (uid !== owner && uid !== 0))
      throw new Error(`${file} is not a file of this uid or root`);
    if ((mode & 0o022) !== 0) throw new Error(`${file} is writable by other users`);
    const sha256 = createHash("sha256").update(readFileSync(fd)).digest("hex");
    return { sha256, ino, ctimeMs };
  } finally {
    closeSync(fd);
  }
}

/** The inputs the build's stamp names, as absolute paths; undefined without a usable stamp. */
function stampInputs(file: unknown): string[] | undefined {
  if (typeof file !== "string") return undefined;
  try {
    const stamp = JSON.parse(readFileSync(`${file}.stamp.json`, "utf8")) as { inputs?: unknown };
    if (!Array.isArray(stamp.inputs) || !stamp.inputs.every((i) => typeof i === "string"))
      return undefined;
    return stamp.inputs.map((i: string) => path.join(path.dirname(path.dirname(file)), i));
  } catch {
    return undefined;
  }
}

function parseResult(
  stdout: string,
):
  { ok?: unknown; file?: unknown; sha256?: unknown; cache?: unknown; reason?: string } | undefined {
  const last = stdout.trim().split("\n").at(-1);
  try {
    return last
      ? (JSON.parse(last) as {
          ok?: unknown;
          file?: unknown;
          sha256?: unknown;
          cache?: unknown;
          reason?: string;
        })
      : undefined;
  } catch {
    return undefined;
  }
}

function compilePython(python: string, runtimesDir: string, log: Logger): Promise<void> {
  const dir = path.join(runtimesDir, "python");
  return new Promise((resolve) => {
    execFile(python, ["-m", "compileall", "-q", dir], { timeout: 20_000 }, (err) => {
      if (err)
        log.warn(
          { err: err.message },
          "could not precompile the python loader; cold starts compile it",
        );
      resolve();
    });
  });
}
