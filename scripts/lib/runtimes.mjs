// Set-up of the Go, PHP, Ruby and C# environments for `npm start`, `npm test` and CI: Debian's
// packages each runtime's prereqs.json names (installed with apt-get as root), then the prepare
// scripts of the compiled ones (runtimes/<lang>/prepare.mjs: the Go warm binary, the C# host).
// An environment that cannot be made ready is reported in ONE line with the reason; the rest of
// the platform starts anyway (the poolkeeper reports that environment unsupported).
// Plain JavaScript with no dependencies, like prereqs.mjs.
import { spawnSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { aptInstall, canApt, ROOT } from "./prereqs.mjs";

/** The runtimes beside node and python, each with runtimes/<lang>/prereqs.json. */
export const LANGUAGES = ["go", "php", "ruby", "dotnet"];

/**
 * @typedef {object} Prereqs
 * @property {string[]} debian  Debian packages the runtime needs
 * @property {string[]} probe   a command that succeeds when they are usable
 * @property {string} needs     what to install, for the message
 */

/**
 * Used only while a runtime's own prereqs.json is not there (it is the runtime's to say).
 * @type {Record<string, Prereqs>}
 */
const FALLBACK = {
  go: { debian: [], probe: ["go", "version"], needs: "Go toolchain at /usr/local/go or on PATH" },
  php: { debian: ["php-cli"], probe: ["php", "-v"], needs: "apt-get install php-cli" },
  ruby: {
    debian: ["ruby", "ruby-rack"],
    probe: ["ruby", "-e", "require 'rack'"],
    needs: "apt-get install ruby ruby-rack",
  },
  dotnet: {
    debian: ["mono-runtime", "mono-mcs"],
    probe: ["mono", "--version"],
    needs: "apt-get install mono-runtime mono-mcs",
  },
};

/** The interpreter the poolkeeper will use for a probe's program (services/poolkeeper config). */
const INTERPRETER_VARS = { php: "FIZZ_PHP", ruby: "FIZZ_RUBY", mono: "FIZZ_MONO", go: "FIZZ_GO" };

/** @param {string} lang @returns {Prereqs} */
export function readPrereqs(lang) {
  const file = path.join(ROOT, "runtimes", lang, "prereqs.json");
  if (!existsSync(file)) return FALLBACK[lang] ?? { debian: [], probe: [], needs: "" };
  return JSON.parse(readFileSync(file, "utf8"));
}

const isRoot = () => process.getuid?.() === 0;

/**
 * The probe as the poolkeeper would run the runtime: FIZZ_PHP & co. when set, Debian's /usr/bin
 * program when root, and Go's /usr/local/go/bin on PATH (the official tarball's place).
 * @param {string[]} probe
 * @returns {{ ok: boolean, why?: string }}
 */
export function runProbe(probe) {
  if (probe.length === 0) return { ok: true };
  let [bin, ...args] = /** @type {[string, ...string[]]} */ (probe);
  const variable = INTERPRETER_VARS[/** @type {keyof typeof INTERPRETER_VARS} */ (bin)];
  if (variable && process.env[variable]) bin = /** @type {string} */ (process.env[variable]);
  else if (isRoot() && !bin.includes("/") && existsSync(`/usr/bin/${bin}`) && bin !== "go")
    bin = `/usr/bin/${bin}`;
  const PATH = ["/usr/local/go/bin", process.env.PATH ?? "/usr/local/bin:/usr/bin:/bin"].join(":");
  const r = spawnSync(bin, args, {
    encoding: "utf8",
    env: { ...process.env, PATH },
    timeout: 30_000,
  });
  if (r.error) {
    const code = /** @type {NodeJS.ErrnoException} */ (r.error).code;
    return { ok: false, why: code === "ENOENT" ? `${bin} not found` : r.error.message };
  }
  if (r.status === 0) return { ok: true };
  const said = `${r.stderr ?? ""}`.trim().split("\n").at(-1) ?? "";
  return { ok: false, why: `${probe[0]} check failed${said ? `: ${said}` : ""}` };
}

/**
 * Installs what the runtimes lack (as root with apt-get), then prepares the compiled ones.
 * Returns the unavailable environments with their one-line reasons (never throws for them).
 * @param {{ log?: (line: string) => void, languages?: string[] }} [opts]
 * @returns {Promise<Array<{ lang: string, reason: string }>>}
 */
export async function ensureRuntimes({ log = console.error, languages = LANGUAGES } = {}) {
  const prereqs = new Map(languages.map((l) => [l, readPrereqs(l)]));
  /** @type {Map<string, string>} */
  const failed = new Map();
  const missing = languages.filter((l) => !runProbe(prereqs.get(l)?.probe ?? []).ok);
  // Every listed package, not only those of a failing probe: a probe cannot check everything
  // (Mono's serialization assemblies are only loaded by the functions that use them).
  const packages = [...new Set(languages.flatMap((l) => prereqs.get(l)?.debian ?? []))].filter(
    (p) => !debianInstalled(p),
  );
  if (packages.length > 0 && canApt()) aptInstall(packages, log);
  for (const lang of languages) {
    const p = /** @type {Prereqs} */ (prereqs.get(lang));
    const probed = missing.includes(lang) ? runProbe(p.probe) : { ok: true };
    if (!probed.ok) {
      const how = packages.length > 0 && !canApt() ? " (not root with apt-get: not installed)" : "";
      failed.set(lang, `${probed.why}${how}; needs ${p.needs}`);
      continue;
    }
    const script = path.join(ROOT, "runtimes", lang, "prepare.mjs");
    if (!existsSync(script)) continue;
    try {
      /** @type {{ prepare: (o: { log: (l: string) => void }) => Promise<{ ok: boolean, reason?: string }> }} */
      const mod = await import(pathToFileURL(script).href);
      const r = await mod.prepare({ log });
      if (!r.ok) failed.set(lang, r.reason ?? `${script} failed`);
    } catch (err) {
      failed.set(lang, `${path.relative(ROOT, script)} failed: ${errorText(err)}`);
    }
  }
  const out = [...failed].map(([lang, reason]) => ({ lang, reason: oneLine(reason) }));
  for (const { lang, reason } of out) log(`fizz: environment ${lang} unavailable: ${reason}`);
  return out;
}

/**
 * Whether dpkg has the package installed; true where there is no dpkg (nothing to do there).
 * @param {string} name
 */
function debianInstalled(name) {
  const r = spawnSync("dpkg-query", ["-W", "-f=${Status}", name], { encoding: "utf8" });
  if (r.error) return true;
  return r.status === 0 && r.stdout.includes("install ok installed");
}

/** @param {unknown} err */
function errorText(err) {
  return err instanceof Error ? err.message : String(err);
}

/** @param {string} s */
function oneLine(s) {
  return s.replace(/\s*\n\s*/g, " ").trim();
}
