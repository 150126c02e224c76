import {
  FizzError,
  isCompiledRuntime,
  runtimeOfImage,
  type AnyObject,
  type Environment,
  type FunctionObject,
  type KindPlural,
} from "@fizz/events";
import { describeRoute, findRouteConflict } from "./route-conflict";
import { routeShape } from "./route-index";
import type { StoreReader } from "./store";
import {
  checkTriggerScope,
  findFunctionUsers,
  findQueueGroupConflict,
  isTrigger,
  type TriggerRuleOptions,
} from "./trigger-rules";

/**
 * The checks a write makes against what is stored, inside its transaction: what an object refers
 * to exists, a route or queue group is free, and nothing still uses what is deleted.
 */
export async function checkReferences(
  r: StoreReader,
  obj: AnyObject,
  rules: TriggerRuleOptions,
): Promise<void> {
  const ns = obj.metadata.namespace;
  if (isTrigger(obj)) {
    checkTriggerScope(obj, rules);
    if (!(await r.get("functions", ns, obj.spec.function))) {
      throw new FizzError(
        "UNKNOWN_FUNCTION",
        `spec.function: function "${obj.spec.function}" does not exist in namespace "${ns}"`,
        { field: "spec.function" },
      );
    }
  }
  if (obj.kind === "Function" || obj.kind === "Package") {
    const env = await checkEnvironment(r, ns, obj.spec.environment);
    if (obj.kind === "Function") checkCodeRunnable(obj, env);
  } else if (obj.kind === "Environment") {
    await checkCompiledUsers(r, obj);
  } else if (obj.kind === "HttpTrigger") {
    // Every namespace: the gateway serves one host/path space. Only triggers of the same route
    // shape can conflict; the route index names them (every trigger until it is built).
    const sameShape = await r.routeClaims(routeShape(obj.spec));
    const other = findRouteConflict(obj, sameShape ?? (await r.list("httptriggers")));
    if (other) {
      const field = obj.spec.path !== undefined ? "spec.path" : "spec.prefix";
      throw new FizzError(
        "ROUTE_CONFLICT",
        `${field}: route ${describeRoute(obj.spec)} conflicts with httptrigger "${other.metadata.name}" in namespace "${other.metadata.namespace}" (${describeRoute(other.spec)})`,
        { field },
      );
    }
  } else if (obj.kind === "MessageQueueTrigger") {
    const other = await findQueueGroupConflict(r, obj);
    if (other) {
      throw new FizzError(
        "ROUTE_CONFLICT",
        `spec.queueGroup: queue group "${obj.spec.queueGroup}" on "${obj.spec.subject}" is already used by mqtrigger "${other.metadata.name}" in namespace "${other.metadata.namespace}" on "${other.spec.subject}"; both would share (split) the messages — use another queue group, or none`,
        { field: "spec.queueGroup" },
      );
    }
  }
}

async function checkEnvironment(r: StoreReader, ns: string, env: string): Promise<Environment> {
  const found = await r.get("environments", ns, env);
  if (found) return found;
  throw new FizzError(
    "UNKNOWN_ENVIRONMENT",
    `spec.environment: environment "${env}" does not exist in namespace "${ns}"`,
    { field: "spec.environment" },
  );
}

/** `fizz fn create --src file.go`: how a compiled runtime's function is deployed instead. */
function compiledHint(runtime: string, filename: string): string {
  return `fizz fn create --src ${filename} (the builder compiles it; the ${runtime} runtime loads no source)`;
}

/**
 * What the registry accepts every service can run: a Go or C# environment's warm instance loads
 * what the builder compiled, so a single source file (`spec.code`) is refused up front.
 */
function checkCodeRunnable(fn: FunctionObject, env: Environment): void {
  const runtime = runtimeOfImage(env.spec.image);
  if (!fn.spec.code || !isCompiledRuntime(runtime)) return;
  throw new FizzError(
    "VALIDATION_FAILED",
    `spec.code: environment "${env.metadata.name}" runs ${runtime}, which is compiled: deploy a source package instead, e.g. ${compiledHint(runtime!, fn.spec.code.filename)}`,
    { field: "spec.code" },
  );
}

/** An environment switched to a compiled runtime would strand its single-file functions. */
async function checkCompiledUsers(r: StoreReader, env: Environment): Promise<void> {
  const runtime = runtimeOfImage(env.spec.image);
  if (!isCompiledRuntime(runtime)) return;
  const ns = env.metadata.namespace;
  const name = env.metadata.name;
  const users = (await r.list("functions", ns)).filter(
    (f) => f.spec.environment === name && f.spec.code !== undefined,
  );
  if (users.length === 0) return;
  throw new FizzError(
    "VALIDATION_FAILED",
    `spec.image: ${runtime} is compiled, and functions ${users.map((f) => `"${f.metadata.name}"`).join(", ")} of environment "${name}" run single source files (spec.code); move them to source packages (fizz fn update --src) first`,
    { field: "spec.image" },
  );
}

/**
 * A function with `spec.package`: the package exists, is for the same environment and has a
 * deployment, which the function gets (its own, unless it already runs one of that package: a
 * patch that keeps the package keeps what it runs; new builds reach it through the roll-out).
 */
export async function resolvePackage(r: StoreReader, fn: FunctionObject): Promise<FunctionObject> {
  const ref = fn.spec.package;
  if (!ref) return fn;
  const ns = fn.metadata.namespace;
  const field = "spec.package.name";
  const pkg = await r.get("packages", ns, ref.name);
  if (!pkg)
    throw new FizzError(
      "UNKNOWN_PACKAGE",
      `${field}: package "${ref.name}" does not exist in namespace "${ns}"`,
      { field },
    );
  if (pkg.spec.environment !== fn.spec.environment)
    throw new FizzError(
      "VALIDATION_FAILED",
      `${field}: package "${ref.name}" is built for environment "${pkg.spec.environment}", not "${fn.spec.environment}"`,
      { field },
    );
  if (ref.deployment) return fn;
  const deployment = pkg.status.deployment;
  if (!deployment) {
    const why = pkg.status.message ? `: ${pkg.status.message}` : "";
    throw new FizzError(
      "PACKAGE_NOT_READY",
      `${field}: package "${ref.name}" has no deployment yet (build ${pkg.status.buildState}${why})`,
      { field },
    );
  }
  return { ...fn, spec: { ...fn.spec, package: { name: ref.name, deployment } } };
}

/** Functions of the namespace that run the package. */
export async function packageUsers(
  r: StoreReader,
  ns: string,
  pkg: string,
): Promise<FunctionObject[]> {
  return (await r.list("functions", ns)).filter((f) => f.spec.package?.name === pkg);
}

export async function checkNotInUse(
  r: StoreReader,
  kind: KindPlural,
  ns: string,
  name: string,
): Promise<void> {
  let users: string[] = [];
  let userKind = "";
  if (kind === "environments") {
    const fns = (await r.list("functions", ns)).filter((f) => f.spec.environment === name);
    const pkgs = (await r.list("packages", ns)).filter((p) => p.spec.environment === name);
    const quoted = (objs: { metadata: { name: string } }[]) =>
      objs.map((o) => `"${o.metadata.name}"`).join(", ");
    if (fns.length > 0) users.push(`functions ${quoted(fns)}`);
    if (pkgs.length > 0) users.push(`packages ${quoted(pkgs)}`);
  } else if (kind === "packages") {
    users = (await packageUsers(r, ns, name)).map((f) => `"${f.metadata.name}"`);
    userKind = "functions";
  } else if (kind === "functions") {
    // Already `<kind> "<name>", ...` per trigger kind: every kind names a function.
    users = await findFunctionUsers(r, ns, name);
  }
  if (users.length > 0) {
    const named = userKind ? `${userKind} ${users.join(", ")}` : users.join(" and ");
    throw new FizzError(
      "IN_USE",
      `${singular(kind)} "${ns}/${name}" is used by ${named}; delete or change them first`,
      { field: "name" },
    );
  }
}

export function notFound(kind: KindPlural, ns: string, name: string): never {
  throw new FizzError("NOT_FOUND", `${singular(kind)} "${name}" not found in namespace "${ns}"`, {
    field: "name",
  });
}

export function singular(kind: KindPlural): string {
  return kind === "httptriggers" ? "httptrigger" : kind.slice(0, -1);
}
