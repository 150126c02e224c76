/**
 * `${NAME}` and `${NAME:-default}` in spec string values, replaced from the CLI's environment
 * when the spec is loaded; `$${` is a literal `${`. Only values are substituted, never keys, so
 * the shape of a document is what its file says. Only variables the DeploymentConfig declares
 * (`spec.variables`) are read: a spec someone else wrote must not be able to copy
 * $AWS_SECRET_ACCESS_KEY or $GITHUB_TOKEN into a configmap, where anyone who may read it sees it.
 */

export interface Substitution {
  value: string;
  /** Variables read, with whether their default was used (the variable was unset or empty). */
  used: Array<{ name: string; defaulted: boolean }>;
  /** Why the value could not be substituted (an unset variable, a malformed reference). */
  problems: string[];
}

export const VARIABLE_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

/**
 * FIZZ_* variables configure the CLI itself, FIZZ_TOKEN above all: a spec someone else wrote
 * must not be able to copy the registry token into a configmap that a read-only token can read.
 */
export function isForbiddenVariable(name: string): boolean {
  return name.startsWith("FIZZ_");
}

export function substitute(
  text: string,
  env: Record<string, string | undefined>,
  /** The names the DeploymentConfig's spec.variables lists. */
  declared: ReadonlySet<string>,
): Substitution {
  const used: Substitution["used"] = [];
  const problems: string[] = [];
  let value = "";
  let i = 0;
  while (i < text.length) {
    const at = text.indexOf("$", i);
    if (at < 0) {
      value += text.slice(i);
      break;
    }
    value += text.slice(i, at);
    if (text.startsWith("$${", at)) {
      value += "${";
      i = at + 3;
      continue;
    }
    if (!text.startsWith("${", at)) {
      value += "$";
      i = at + 1;
      continue;
    }
    const end = text.indexOf("}", at + 2);
    if (end < 0) {
      problems.push(`"${text.slice(at)}": unterminated \${ (write $\${ for a literal \${)`);
      value += text.slice(at);
      break;
    }
    const body = text.slice(at + 2, end);
    const sep = body.indexOf(":-");
    const name = sep < 0 ? body : body.slice(0, sep);
    const fallback = sep < 0 ? undefined : body.slice(sep + 2);
    i = end + 1;
    if (!VARIABLE_NAME.test(name)) {
      problems.push(
        `"\${${body}}" is not a variable reference: use \${NAME} or \${NAME:-default} (names are letters, digits and '_'), or $\${ for a literal \${`,
      );
      continue;
    }
    if (isForbiddenVariable(name)) {
      problems.push(
        `variable ${name} may not be used: FIZZ_* variables configure the CLI (FIZZ_TOKEN is the registry token) and never go into a spec`,
      );
      continue;
    }
    if (!declared.has(name)) {
      problems.push(
        `variable ${name} is not declared: only variables listed in the DeploymentConfig's spec.variables are taken from the environment; add ${name} there if this spec should read it`,
      );
      continue;
    }
    const set = env[name];
    // As in the shell, `:-` also replaces an empty value.
    if (set !== undefined && (set !== "" || fallback === undefined)) {
      used.push({ name, defaulted: false });
      value += set;
    } else if (fallback !== undefined) {
      used.push({ name, defaulted: true });
      value += fallback;
    } else {
      problems.push(`variable ${name} is not set (set it, or give a default: \${${name}:-value})`);
    }
  }
  return { value, used, problems };
}
