import { accessSync, constants, statSync } from "node:fs";
import path from "node:path";
import type { RuntimeName } from "@fizz/events";
import { INSTANCE_PATH } from "./isolation";

/**
 * The interpreters the process backend starts loaders with (FIZZ_PYTHON, FIZZ_PHP, FIZZ_RUBY,
 * FIZZ_MONO). As root the defaults are Debian's /usr/bin ones: an instance uid cannot use an
 * interpreter under root's home (pyenv, rbenv), so a bare name is only the default otherwise.
 */
export interface Interpreters {
  python: string;
  php: string;
  ruby: string;
  mono: string;
}

/** What runs each runtime, and the Debian package that brings its interpreter. */
const INTERPRETED: Record<"python" | "php" | "ruby", { bin: string; apt: string }> = {
  python: { bin: "python3", apt: "python3" },
  php: { bin: "php", apt: "php-cli" },
  ruby: { bin: "ruby", apt: "ruby" },
};
const MONO = { bin: "mono", apt: "mono-runtime" };

export function defaultInterpreters(
  env: Record<string, string | undefined>,
  host: { isRoot: boolean; exists(file: string): boolean },
): Interpreters {
  const pick = (variable: string, bin: string) => {
    const fromEnv = env[variable];
    if (fromEnv) return fromEnv;
    const system = `/usr/bin/${bin}`;
    return host.isRoot && host.exists(system) ? system : bin;
  };
  return {
    python: pick("FIZZ_PYTHON", INTERPRETED.python.bin),
    php: pick("FIZZ_PHP", INTERPRETED.php.bin),
    ruby: pick("FIZZ_RUBY", INTERPRETED.ruby.bin),
    mono: pick("FIZZ_MONO", MONO.bin),
  };
}

/**
 * How a runtime starts on this host: its argv, and the files that must be there first. `needs`
 * are checked in order; the first one missing is the reason the environment is unsupported.
 */
export interface RuntimeLaunch {
  argv: string[];
  /** The interpreter, then the loader or prepared artifact; `missing`: the reason when absent. */
  needs: Array<{
    file: string;
    kind: "exec" | "read";
    missing: string;
    /** The directories below this one down to the file must be traversable by instance uids. */
    under?: string;
  }>;
}

export function runtimeLaunch(
  runtime: RuntimeName,
  runtimesDir: string,
  interpreters: Interpreters,
): RuntimeLaunch {
  const at = (...p: string[]) => path.join(runtimesDir, ...p);
  const prepared = (lang: string, file: string) =>
    `${file} not found: not prepared (run: node ${path.join(runtimesDir, lang, "prepare.mjs")})`;
  const interpreter = (
    variable: string,
    bin: string,
    apt: string,
  ): RuntimeLaunch["needs"][number] => ({
    file: bin,
    kind: "exec",
    missing: `interpreter ${bin} not found (${variable}; Debian: apt-get install ${apt})`,
  });
  switch (runtime) {
    case "node":
      return { argv: [process.execPath, at("node", "server.mjs")], needs: [] };
    case "python":
      return {
        argv: [interpreters.python, at("python", "server.py")],
        needs: [interpreter("FIZZ_PYTHON", interpreters.python, INTERPRETED.python.apt)],
      };
    case "php":
      return {
        argv: [interpreters.php, at("php", "server.php")],
        needs: [
          interpreter("FIZZ_PHP", interpreters.php, INTERPRETED.php.apt),
          {
            file: at("php", "server.php"),
            kind: "read",
            missing: `${at("php", "server.php")} not found`,
          },
        ],
      };
    case "ruby":
      return {
        argv: [interpreters.ruby, at("ruby", "server.rb")],
        needs: [
          interpreter("FIZZ_RUBY", interpreters.ruby, INTERPRETED.ruby.apt),
          {
            file: at("ruby", "server.rb"),
            kind: "read",
            missing: `${at("ruby", "server.rb")} not found`,
          },
        ],
      };
    case "go":
      return {
        argv: [at("go", ".build", "fizz-go-warm")],
        needs: [
          {
            file: at("go", ".build", "fizz-go-warm"),
            kind: "exec",
            missing: prepared("go", at("go", ".build", "fizz-go-warm")),
            under: runtimesDir,
          },
        ],
      };
    case "dotnet":
      return {
        // --debug -O=-inline: line numbers in a function's stack traces; the host would otherwise
        // re-exec itself with them (runtimes/dotnet/host/Program.cs EnsureDebugger).
        argv: [
          interpreters.mono,
          "--debug",
          "-O=-inline",
          at("dotnet", ".build", "fizz-dotnet.exe"),
        ],
        needs: [
          interpreter("FIZZ_MONO", interpreters.mono, MONO.apt),
          {
            file: at("dotnet", ".build", "fizz-dotnet.exe"),
            kind: "read",
            missing: prepared("dotnet", at("dotnet", ".build", "fizz-dotnet.exe")),
            under: runtimesDir,
          },
        ],
      };
  }
}

/** A bare name as the instance's own PATH finds it (setpriv execvp()s it with that PATH). */
export function resolveOnPath(bin: string, pathVar: string = INSTANCE_PATH): string | undefined {
  if (bin.includes("/")) return bin;
  for (const dir of pathVar.split(":")) {
    const p = path.join(dir, bin);
    try {
      accessSync(p, constants.X_OK);
      if (statSync(p).isFile()) return p;
    } catch {
      // not here
    }
  }
  return undefined;
}

/**
 * Why this launch cannot work here, in one line, or undefined. With `otherUids` the files must
 * also be usable by a uid that is neither owner nor group (the instance's own): world-executable
 * or world-readable, as the prepare scripts leave them.
 */
export function launchProblem(launch: RuntimeLaunch, otherUids: boolean): string | undefined {
  for (const need of launch.needs) {
    const file = resolveOnPath(need.file);
    let mode: number;
    try {
      const st = statSync(file ?? need.file);
      if (!st.isFile()) return `${need.file} is not a file`;
      mode = st.mode;
    } catch {
      return need.missing;
    }
    if (otherUids && need.under !== undefined) {
      const closed = closedDir(need.under, path.dirname(need.file));
      if (closed)
        return `${closed.dir} is not traversable by instance uids (mode ${closed.mode}; rerun the runtime's prepare)`;
    }
    const bit = need.kind === "exec" ? 0o001 : 0o004;
    if (otherUids && (mode & bit) === 0)
      return `${file ?? need.file} is not ${need.kind === "exec" ? "executable" : "readable"} by instance uids (mode ${(mode & 0o777).toString(8)})`;
    if (!otherUids && need.kind === "exec") {
      try {
        accessSync(file ?? need.file, constants.X_OK);
      } catch {
        return `${need.file} is not executable`;
      }
    }
  }
  return undefined;
}

/** The first directory below `top` on the way to `dir` that others cannot traverse. */
function closedDir(top: string, dir: string): { dir: string; mode: string } | undefined {
  const rel = path.relative(top, dir);
  if (rel.startsWith("..") || path.isAbsolute(rel)) return undefined;
  let d = top;
  for (const part of rel.split(path.sep).filter(Boolean)) {
    d = path.join(d, part);
    try {
      const mode = statSync(d).mode;
      if ((mode & 0o001) === 0) return { dir: d, mode: (mode & 0o777).toString(8) };
    } catch {
      return undefined; // missing: the file check words it
    }
  }
  return undefined;
}
