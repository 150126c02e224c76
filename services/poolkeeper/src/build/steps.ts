import { existsSync } from "node:fs";
import path from "node:path";
import type { RuntimeName } from "@fizz/events";

/** The programs a build runs with: the same node and python the process backend runs instances with. */
export interface BuildTools {
  node: string;
  /** npm's CLI script, run by `node` (npm's own shebang would look `node` up on PATH). */
  npmCli: string | undefined;
  python: string;
}

export interface BuildStep {
  /** As shown in the build log, e.g. `npm ci --omit=dev`. */
  label: string;
  argv: string[];
  /** Variables of this step only (the custom command's SRC_PKG and DEPLOY_PKG). */
  env?: Record<string, string>;
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
 * - otherwise nothing: the source is the deployment.
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
