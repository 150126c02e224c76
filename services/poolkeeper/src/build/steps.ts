import { existsSync } from "node:fs";
import path from "node:path";
import { isCompiledRuntime, type RuntimeName } from "@fizz/events";

/** The programs a build runs with: the same node and python the process backend runs instances with. */
export interface BuildTools {
  node: string;
  /** npm's CLI script, run by `node` (npm's own shebang would look `node` up on PATH). */
  npmCli: string | undefined;
  python: string;
  /** The repository's runtimes/: compiled runtimes build with runtimes/<lang>/build.sh. */
  runtimesDir: string;
  /** The Go toolchain (FIZZ_GO, else /usr/local/go/bin/go, else go on PATH); its dir joins PATH. */
  go?: string | undefined;
}

/**
 * Go variables of the poolkeeper's own environment a Go build gets (a module proxy the operator
 * configured); the environment's builder.env can set them too. Nothing else of it is passed.
 */
// Not GOFLAGS: build.sh sets its own, so no -toolexec or -overlay reaches a build from outside.
export const GO_PASSTHROUGH = ["GOPROXY", "GOSUMDB", "GONOSUMDB", "GOPRIVATE"] as const;

export function goEnvOf(env: Record<string, string | undefined>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const k of GO_PASSTHROUGH) {
    const v = env[k];
    if (v) out[k] = v;
  }
  return out;
}

/** Where the Go toolchain is: FIZZ_GO, the official tarball's /usr/local/go, or PATH's. */
export function findGo(
  env: Record<string, string | undefined>,
  exists: (file: string) => boolean = existsSync,
): string | undefined {
  if (env.FIZZ_GO) return env.FIZZ_GO;
  if (exists("/usr/local/go/bin/go")) return "/usr/local/go/bin/go";
  return ["/usr/bin/go", "/usr/lib/go/bin/go"].find((p) => exists(p));
}

export interface BuildStep {
  /** As shown in the build log, e.g. `npm ci --omit=dev`. */
  label: string;
  argv: string[];
  /** Variables of this step only (the custom command's SRC_PKG and DEPLOY_PKG). */
  env?: Record<string, string>;
  /** Directories put before the build's PATH (the Go toolchain's bin). */
  pathDirs?: string[];
}

/** npm next to the node binary, as installed by the node tarballs, Debian and nvm alike. */
export function findNpmCli(node: string): string | undefined {
  const candidates = [
    path.resolve(path.dirname(node), "../lib/node_modules/npm/bin/npm-cli.js"),
    "/usr/lib/node_modules/npm/bin/npm-cli.js",
    "/usr/share/nodejs/npm/bin/npm-cli.js",
  ];
  return candidates.find((c) => existsSync(c));
}

/**
 * What a build runs, in order (Fission's builder conventions):
 * - a custom `buildCommand`: `sh -c <cmd>` in the source directory with SRC_PKG and DEPLOY_PKG;
 * - Node: `npm ci --omit=dev` with a lock file, else `npm install --omit=dev` with a package.json;
 * - Python: `pip install -r requirements.txt --target <src>` with a requirements.txt;
 * - Go and C# (compiled): `runtimes/<lang>/build.sh` in the source directory, with SRC_PKG,
 *   DEPLOY_PKG and FIZZ_RUNTIMES_DIR; its output (DEPLOY_PKG) is the deployment. Go builds get a
 *   private GOPATH/GOCACHE under the build's HOME and the operator's GOPROXY;
 * - otherwise nothing: the source is the deployment (PHP and Ruby: see buildNotes).
 */
export function buildSteps(opts: {
  runtime: RuntimeName | undefined;
  buildCommand: string | undefined;
  srcDir: string;
  outDir: string;
  tools: BuildTools;
  /** Whether the source has this file at its top. */
  has: (file: string) => boolean;
}): BuildStep[] {
  const { tools, srcDir } = opts;
  if (opts.buildCommand !== undefined) {
    return [
      {
        label: opts.buildCommand,
        argv: ["/bin/sh", "-c", opts.buildCommand],
        env: { SRC_PKG: srcDir, DEPLOY_PKG: opts.outDir },
      },
    ];
  }
  if (opts.runtime === "node") {
    const npm = (args: string[]): BuildStep => ({
      label: `npm ${args.join(" ")}`,
      argv: tools.npmCli ? [tools.node, tools.npmCli, ...args] : ["npm", ...args],
    });
    if (opts.has("package-lock.json") || opts.has("npm-shrinkwrap.json"))
      return [npm(["ci", "--omit=dev"])];
    if (opts.has("package.json")) return [npm(["install", "--omit=dev"])];
    return [];
  }
  if (opts.runtime !== undefined && isCompiledRuntime(opts.runtime)) {
    const script = path.join(tools.runtimesDir, opts.runtime, "build.sh");
    const home = path.dirname(srcDir);
    const goEnv: Record<string, string> =
      opts.runtime === "go"
        ? {
            GOPATH: path.join(home, "go"),
            GOMODCACHE: path.join(home, "go", "pkg", "mod"),
            GOCACHE: path.join(home, ".cache", "go-build"),
          }
        : {};
    return [
      {
        label: `${path.relative(path.dirname(tools.runtimesDir), script)}`,
        argv: [script],
        env: {
          SRC_PKG: srcDir,
          DEPLOY_PKG: opts.outDir,
          FIZZ_RUNTIMES_DIR: tools.runtimesDir,
          ...goEnv,
        },
        ...(opts.runtime === "go" && tools.go && path.isAbsolute(tools.go)
          ? { pathDirs: [path.dirname(tools.go)] }
          : {}),
      },
    ];
  }
  if (opts.runtime === "python" && opts.has("requirements.txt")) {
    const args = [
      "-m",
      "pip",
      "install",
      "-r",
      "requirements.txt",
      "--target",
      srcDir,
      "--no-input",
      "--disable-pip-version-check",
      "--no-cache-dir",
    ];
    return [{ label: `pip ${args.slice(2).join(" ")}`, argv: [tools.python, ...args] }];
  }
  return [];
}

/**
 * What the build log says about dependencies the build does not fetch: there is no Packagist or
 * rubygems.org to install from, so PHP's and Ruby's must come vendored in the source.
 */
export function buildNotes(opts: {
  runtime: RuntimeName | undefined;
  buildCommand: string | undefined;
  has: (file: string) => boolean;
}): string[] {
  if (opts.buildCommand !== undefined) return [];
  if (opts.runtime === "php" && opts.has("composer.json"))
    return [
      "composer.json found: composer is not run here (no Packagist); dependencies must be vendored in the source (vendor/ with vendor/autoload.php). The source is the deployment.",
    ];
  if (opts.runtime === "ruby" && opts.has("Gemfile"))
    return [
      "Gemfile found: bundle install is not run here (no rubygems.org); gems must be vendored in the source (e.g. bundle install --standalone --path vendor/bundle, then commit vendor/). The source is the deployment.",
    ];
  return [];
}
