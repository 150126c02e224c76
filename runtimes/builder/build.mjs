// @ts-check
/**
 * The build steps of a builder pod: the same conventions as the process backend's builder
 * (services/poolkeeper/src/build/steps.ts), for the programs of the builder image.
 */
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { lstat, readdir } from "node:fs/promises";
import path from "node:path";

export const LOG_MAX_CHARS = 64 * 1024;

/** The last LOG_MAX_CHARS characters of the build's output, memory bounded. */
export class LogTail {
  buf = "";
  dropped = 0;
  /** @param {string} chunk */
  write(chunk) {
    this.buf += chunk;
    if (this.buf.length >= 2 * LOG_MAX_CHARS) this.trim();
  }
  /** @param {string} line */
  note(line) {
    if (this.buf.length > 0 && !this.buf.endsWith("\n")) this.buf += "\n";
    this.write(`${line}\n`);
  }
  trim() {
    if (this.buf.length <= LOG_MAX_CHARS) return;
    this.dropped += this.buf.length - LOG_MAX_CHARS;
    this.buf = this.buf.slice(this.buf.length - LOG_MAX_CHARS);
  }
  text() {
    this.trim();
    if (this.dropped === 0) return this.buf;
    const mark = `[... ${this.dropped} earlier characters cut]\n`;
    return mark + this.buf.slice(Math.min(this.buf.length, mark.length));
  }
}

/** Runtimes the builder compiles with runtimes/<lang>/build.sh (shared/events COMPILED_RUNTIMES). */
export const COMPILED = ["go", "dotnet"];

/** Go settings of this pod's own environment (its image's GOPROXY) a Go build gets. */
// Not GOFLAGS: build.sh sets its own, so no -toolexec or -overlay reaches a build from outside.
export const GO_PASSTHROUGH = ["GOPROXY", "GOSUMDB", "GONOSUMDB", "GOPRIVATE"];

/**
 * @typedef {{ label: string, argv: string[], env?: Record<string, string> }} Step
 * @param {{ runtime: string | undefined, buildCommand: string | undefined, srcDir: string,
 *   outDir: string, python: string, runtimesDir?: string,
 *   hostEnv?: Record<string, string | undefined> }} o
 * @returns {Step[]}
 */
export function buildSteps(o) {
  const has = (/** @type {string} */ f) => existsSync(path.join(o.srcDir, f));
  if (o.buildCommand !== undefined)
    return [
      {
        label: o.buildCommand,
        argv: ["/bin/sh", "-c", o.buildCommand],
        env: { SRC_PKG: o.srcDir, DEPLOY_PKG: o.outDir },
      },
    ];
  if (o.runtime !== undefined && COMPILED.includes(o.runtime)) {
    const runtimesDir = o.runtimesDir ?? path.resolve(import.meta.dirname, "..");
    /** @type {Record<string, string>} */
    const env = { SRC_PKG: o.srcDir, DEPLOY_PKG: o.outDir, FIZZ_RUNTIMES_DIR: runtimesDir };
    if (o.runtime === "go") {
      const home = path.dirname(o.srcDir);
      for (const k of GO_PASSTHROUGH) {
        const v = o.hostEnv?.[k];
        if (v) env[k] = v;
      }
      Object.assign(env, {
        GOPATH: path.join(home, "go"),
        GOMODCACHE: path.join(home, "go", "pkg", "mod"),
        GOCACHE: path.join(home, ".cache", "go-build"),
      });
    }
    const script = path.join(runtimesDir, o.runtime, "build.sh");
    return [{ label: `runtimes/${o.runtime}/build.sh`, argv: [script], env }];
  }
  if (o.runtime === "node") {
    if (has("package-lock.json") || has("npm-shrinkwrap.json"))
      return [{ label: "npm ci --omit=dev", argv: ["npm", "ci", "--omit=dev"] }];
    if (has("package.json"))
      return [{ label: "npm install --omit=dev", argv: ["npm", "install", "--omit=dev"] }];
  }
  if (o.runtime === "python" && has("requirements.txt")) {
    const args = ["install", "-r", "requirements.txt", "--target", o.srcDir, "--no-input"];
    args.push("--disable-pip-version-check", "--no-cache-dir");
    return [{ label: `pip ${args.join(" ")}`, argv: [o.python, "-m", "pip", ...args] }];
  }
  return [];
}

/**
 * What the log says about dependencies no step fetches: no Packagist or rubygems.org here, so
 * PHP's and Ruby's come vendored in the source (the same words as the poolkeeper's builder).
 * @param {{ runtime: string | undefined, buildCommand: string | undefined, srcDir: string }} o
 * @returns {string[]}
 */
export function buildNotes(o) {
  if (o.buildCommand !== undefined) return [];
  const has = (/** @type {string} */ f) => existsSync(path.join(o.srcDir, f));
  if (o.runtime === "php" && has("composer.json"))
    return [
      "composer.json found: composer is not run here (no Packagist); dependencies must be vendored in the source (vendor/ with vendor/autoload.php). The source is the deployment.",
    ];
  if (o.runtime === "ruby" && has("Gemfile"))
    return [
      "Gemfile found: bundle install is not run here (no rubygems.org); gems must be vendored in the source (e.g. bundle install --standalone --path vendor/bundle, then commit vendor/). The source is the deployment.",
    ];
  return [];
}

/**
 * Runs one step in its own process group until it exits or the deadline passes (SIGTERM, then
 * SIGKILL after `graceMs`).
 * @param {Step} step
 * @param {{ cwd: string, env: Record<string, string>, deadline: number, graceMs: number, log: LogTail }} o
 * @returns {Promise<{ code: number | null, signal: string | null, timedOut: boolean, error?: string }>}
 */
export function runStep(step, o) {
  const [file, ...args] = step.argv;
  return new Promise((resolve) => {
    /** @type {{ code: number | null, signal: string | null, timedOut: boolean, error?: string }} */
    const r = { code: null, signal: null, timedOut: false };
    const proc = spawn(/** @type {string} */ (file), args, {
      cwd: o.cwd,
      env: { ...o.env, ...step.env },
      stdio: ["ignore", "pipe", "pipe"],
      detached: true,
    });
    const group = (/** @type {NodeJS.Signals} */ sig) => {
      try {
        if (proc.pid !== undefined) process.kill(-proc.pid, sig);
      } catch {
        // gone
      }
    };
    /** @type {NodeJS.Timeout | undefined} */
    let hard;
    const timer = setTimeout(
      () => {
        r.timedOut = true;
        group("SIGTERM");
        hard = setTimeout(() => group("SIGKILL"), o.graceMs);
      },
      Math.max(0, o.deadline - Date.now()),
    );
    for (const s of [proc.stdout, proc.stderr])
      s.setEncoding("utf8").on("data", (d) => o.log.write(d));
    let done = false;
    const finish = () => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      clearTimeout(hard);
      group("SIGKILL");
      resolve(r);
    };
    proc.once("error", (e) => {
      r.error = e.message;
      if (proc.pid === undefined) finish();
    });
    proc.once("exit", (code, signal) => {
      r.code = code;
      r.signal = signal;
      setTimeout(finish, 200).unref();
    });
    proc.once("close", finish);
  });
}

/**
 * Kills every other process this uid may signal (kill(-1) spares the caller): what a build left
 * running, even outside its process group, must not touch the output or outlive the build. Only
 * as PID 1, i.e. the init of the pod's own PID namespace: anywhere else (a developer's machine,
 * procnode) kill(-1) would reach the host's processes.
 */
export function killLeftovers() {
  if (process.pid !== 1) return;
  try {
    process.kill(-1, "SIGKILL");
  } catch {
    // nothing to kill
  }
}

/** out/ when the build wrote anything there, else src/; both must still be real directories. */
export async function deploymentDir(/** @type {string} */ srcDir, /** @type {string} */ outDir) {
  for (const d of [outDir, srcDir]) {
    const st = await lstat(d).catch(() => undefined);
    if (!st?.isDirectory())
      throw new Error(`${path.basename(d)}/ is no longer a directory after the build`);
  }
  return (await readdir(outDir)).length > 0 ? outDir : srcDir;
}

/**
 * `tar` with the given arguments; resolves when it exited 0.
 * @param {string[]} args
 */
export function tar(args) {
  return new Promise((resolve, reject) => {
    const p = spawn("tar", args, { stdio: ["ignore", "ignore", "pipe"] });
    let err = "";
    p.stderr.setEncoding("utf8").on("data", (d) => (err = (err + d).slice(-2000)));
    p.once("error", reject);
    p.once("exit", (code) =>
      code === 0
        ? resolve(undefined)
        : reject(new Error(`tar ${args[0]}: ${err.trim() || `exit ${code}`}`)),
    );
  });
}

/**
 * One line on why a step failed, or undefined when it succeeded.
 * @param {{ code: number | null, signal: string | null, timedOut: boolean, error?: string }} r
 * @param {string} step
 * @param {number} timeoutSeconds
 */
export function describeFailure(r, step, timeoutSeconds) {
  const label = step.length > 60 ? `${step.slice(0, 57)}...` : step;
  if (r.timedOut) return `timed out after ${timeoutSeconds}s (builder.timeoutSeconds)`;
  if (r.error) return `could not start ${label}: ${r.error}`;
  if (r.signal) return `${label} was killed by ${r.signal}`;
  if (r.code !== 0) return `${label} exited with code ${r.code ?? "?"}`;
  return undefined;
}
