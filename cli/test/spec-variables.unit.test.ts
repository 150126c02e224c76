import { expect } from "chai";
import { substitute } from "../src/spec/variables.js";

describe("spec variables: ${NAME} and ${NAME:-default}", () => {
  const env = { HOST: "db.local", EMPTY: "", PORT: "6379" };
  /** What the DeploymentConfig declares in these tests. */
  const ALL = new Set(["HOST", "EMPTY", "PORT", "NOPE", "GUESTBOOK_REDIS_URL", "FIZZ_TOKEN"]);

  it("replaces set variables, several in one value", () => {
    const r = substitute("redis://${HOST}:${PORT}/0", env, ALL);
    expect(r.value).to.equal("redis://db.local:6379/0");
    expect(r.problems).to.deep.equal([]);
    expect(r.used).to.deep.equal([
      { name: "HOST", defaulted: false },
      { name: "PORT", defaulted: false },
    ]);
  });

  it("uses the default for an unset or empty variable, as the shell's :- does", () => {
    expect(substitute("${NOPE:-redis://127.0.0.1:6379/0}", env, ALL).value).to.equal(
      "redis://127.0.0.1:6379/0",
    );
    expect(substitute("${EMPTY:-fallback}", env, ALL).value).to.equal("fallback");
    expect(substitute("${HOST:-other}", env, ALL).value).to.equal("db.local");
    expect(substitute("[${NOPE:-}]", env, ALL).value).to.equal("[]");
  });

  it("keeps an empty set variable without a default as empty", () => {
    const r = substitute("x${EMPTY}y", env, ALL);
    expect(r.value).to.equal("xy");
    expect(r.problems).to.deep.equal([]);
  });

  it("reads $${ as a literal ${, and leaves other dollars alone", () => {
    const r = substitute("$${HOST} costs $5 and $$ twice, ${HOST}", env, ALL);
    expect(r.value).to.equal("${HOST} costs $5 and $$ twice, db.local");
    expect(r.used.map((u) => u.name)).to.deep.equal(["HOST"]);
  });

  it("reports an unset variable without a default, naming it and the fix", () => {
    const r = substitute("${GUESTBOOK_REDIS_URL}", env, ALL);
    expect(r.problems).to.deep.equal([
      "variable GUESTBOOK_REDIS_URL is not set (set it, or give a default: ${GUESTBOOK_REDIS_URL:-value})",
    ]);
  });

  it("reports malformed references instead of passing them on", () => {
    expect(substitute("${1BAD}", env, ALL).problems[0]).to.match(/is not a variable reference/);
    expect(substitute("${}", env, ALL).problems[0]).to.match(/is not a variable reference/);
    expect(substitute("abc ${HOST", env, ALL).problems[0]).to.match(/unterminated \$\{/);
  });

  it("never substitutes FIZZ_* variables, even declared: a spec must not copy the registry token into an object", () => {
    const r = substitute("${FIZZ_TOKEN}", { FIZZ_TOKEN: "secret-admin-token" }, ALL);
    expect(r.value).not.to.include("secret-admin-token");
    expect(r.problems[0]).to.match(/^variable FIZZ_TOKEN may not be used: FIZZ_\* variables/);
    expect(substitute("${FIZZ_TOKEN:-x}", {}, ALL).problems).to.have.length(1);
  });

  it("substitutes only declared variables: an undeclared one, even with a default, is a problem naming it", () => {
    const secrets = { AWS_SECRET_ACCESS_KEY: "aws-secret", HOST: "db.local" };
    const r = substitute("${AWS_SECRET_ACCESS_KEY} ${HOST}", secrets, new Set(["HOST"]));
    expect(r.value).not.to.include("aws-secret");
    expect(r.used).to.deep.equal([{ name: "HOST", defaulted: false }]);
    expect(r.problems).to.deep.equal([
      "variable AWS_SECRET_ACCESS_KEY is not declared: only variables listed in the DeploymentConfig's spec.variables are taken from the environment; add AWS_SECRET_ACCESS_KEY there if this spec should read it",
    ]);
    expect(
      substitute("${GITHUB_TOKEN:-x}", { GITHUB_TOKEN: "ghp" }, new Set()).problems,
    ).to.have.length(1);
  });
});
