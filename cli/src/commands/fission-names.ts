/**
 * Fission's flag names per command, in one place: what `fissionFlags` (fission-flags.ts) accepts
 * as another name for ours, and what it refuses with the reason. docs/cli.md's "Coming from
 * Fission" table lists the same.
 */

/** Every create command: Fission writes a spec file instead of creating with `--spec`. */
export const SPEC_FLAGS = {
  "--spec":
    "fizz does not write spec files from create commands: write the objects as YAML (fizz spec init starts a directory) and apply them with fizz spec apply -f <dir>",
  "--dry":
    "fizz has no dry run that prints specs: write the objects as YAML and check them with fizz spec validate -f <dir>",
} as const;

/** Every list command: Fission lists every namespace when -n is not given. */
export const ALL_NAMESPACES = {
  "-A, --all-namespaces":
    "fizz lists one namespace at a time: give it with -n <namespace> (default: default)",
} as const;

/** CPU and memory: Fission's per-environment and per-function pod resources. */
const RESOURCE_FLAGS = Object.fromEntries(
  ["--mincpu <millicores>", "--maxcpu <millicores>", "--minmemory <mb>", "--maxmemory <mb>"].map(
    (flags) => [
      flags,
      "CPU and memory are set for every instance by the operator (FIZZ_POD_CPU_REQUEST/_LIMIT and FIZZ_POD_MEMORY_REQUEST/_LIMIT on the poolkeeper), not per environment or function",
    ],
  ),
);

// fizz fn create / update
/** Fission's names for the options create and update share (`fission fn create --buildcmd`). */
export const FN_ALIASES = {
  "--pkgname <package>": "--pkg",
  "--sourcearchive <path>": "--src",
  "--source <path>": "--src",
  "--deployarchive <path>": "--deploy",
  "--buildcmd <command>": "--build-cmd",
  "--entry <name>": "--entrypoint",
  "--fntimeout <seconds>": "--timeout",
  "--ft <seconds>": "--timeout",
  "--idletimeout <seconds>": "--idle-timeout",
  "--minscale <n>": "--min-instances",
  "--maxscale <n>": "--max-instances",
  "--requestsperpod <n>": "--concurrency",
  "--rpp <n>": "--concurrency",
  "-e <key=value>": { ours: "--env-var", repeatable: true },
} as const;

const SPECIALIZATION =
  "how long an instance may take to load a function is the platform's setting, not a function's";
const ONCE_ONLY =
  "a fizz instance serves many requests (up to --concurrency at once); there is no one-request instance";

export const FN_UNSUPPORTED = {
  "--executortype <type>": {
    why: "fizz has one executor, a pool of warm instances specialized on demand (Fission's poolmgr); --min-instances keeps instances running (Fission's --minscale)",
    except: ["poolmgr"],
  },
  "--specializationtimeout <seconds>": SPECIALIZATION,
  "--st <seconds>": SPECIALIZATION,
  "--con <n>":
    "Fission's --concurrency counts instances specialized at once: that is --max-instances here (fizz's --concurrency is requests per instance, Fission's --requestsperpod)",
  "--onceonly": ONCE_ONLY,
  "--yolo": ONCE_ONLY,
  "--targetcpu <percent>":
    "fizz adds instances when every instance has --concurrency requests in flight, not by CPU",
  ...RESOURCE_FLAGS,
};

// fizz env create / update
const BUILDER =
  "fizz builds packages with the environment's runtime conventions (npm ci, pip install -r requirements.txt, runtimes/<lang>/build.sh for Go and C#); give a build command per package with --build-cmd";

/** Fission's environment flags that have no meaning here. */
export const ENV_UNSUPPORTED = {
  "--version <n>": {
    why: "--version is Fission's environment interface version; every fizz environment is what Fission calls version 3 (source and deployment packages, specialization on demand)",
    except: ["1", "2", "3"],
  },
  "--buildcmd <command>": BUILDER,
  ...RESOURCE_FLAGS,
};

// fizz pkg create / update / list
/** Fission's names for the archive flags (`fission pkg create --sourcearchive`). */
export const PKG_ALIASES = {
  "--sourcearchive <path>": "--src",
  "--source <path>": "--src",
  "--deployarchive <path>": "--deploy",
  "--buildcmd <command>": "--build-cmd",
} as const;

const CHECKSUM = "fizz uploads local files only and computes their sha256 itself";
export const PKG_LIST_FILTER =
  "fizz pkg list shows every package with its BUILD state; filter its -o json output instead";

export const PKG_UNSUPPORTED = {
  "--code <file>":
    "a package's file or directory is given with --deploy (used as is) or --src (built)",
  "--srcchecksum <sha256>": CHECKSUM,
  "--deploychecksum <sha256>": CHECKSUM,
  "--insecure": CHECKSUM,
  "--oci <image>": "fizz packages are archives; there are no OCI image packages",
};

// fizz route create / update
const INGRESS =
  "the gateway serves routes itself; fizz creates no Ingress or HTTPRoute (expose the gateway instead)";

/** Fission's HTTP trigger flags that have no meaning here. */
export const ROUTE_UNSUPPORTED = {
  "--createingress": INGRESS,
  "--ingressrule <rule>": INGRESS,
  "--ingressannotation <annotation>": INGRESS,
  "--ingresstls <secret>": INGRESS,
  "--weight <weight>":
    "a route calls one function; there is no weighted traffic split (canary) between functions",
};

// fizz mqt create / update
/** Fission's names (`fission mqt create --topic t --resptopic r --maxretries 3`). */
export const MQT_ALIASES = {
  "--topic <topic>": "--subject",
  "--resptopic <topic>": "--response-subject",
  "--errortopic <topic>": "--error-subject",
  "--maxretries <n>": "--max-retries",
  "-c, --contenttype <type>": "--content-type",
} as const;

const CONNECTOR =
  "fizz's gateways consume the NATS subject themselves; there is no connector or KEDA scaler to configure";

export const MQT_UNSUPPORTED = {
  "--mqtkind <kind>": CONNECTOR,
  "--pollinginterval <seconds>": CONNECTOR,
  "--cooldownperiod <seconds>": CONNECTOR,
  "--minreplicacount <n>": CONNECTOR,
  "--maxreplicacount <n>": CONNECTOR,
  "--secret <name>": `${CONNECTOR} (the platform's own NATS connection is used)`,
  "--metadata <key=value>": `${CONNECTOR}; give a JetStream stream with --stream`,
};
