import { expect } from "chai";
import { substitute } from "../src/spec/variables.js";

describe("spec variables: ${NAME} and ${NAME:-default}", () => {
  const env = { HOST: "db.local", EMPTY: "", PORT: "6379" };

  it("replaces set variables, several in one value", () => {
    const r = substitute("redis://${HOST}:${PORT}/0", env);
    expect(r.value).to.equal("redis://db.local:6379/0");
    expect(r.problems).to.deep.equal([]);
    expect(r.used).to.deep.equal([
      { name: "HOST", defaulted: false },
      { name: "PORT", defaulted: false },
    ]);
  });

  it("uses the default for an unset or empty variable, as the shell's :- does", () => {
    expect(substitute("${NOPE:-redis://127.0.0.1:6379/0}", env).value).to.equal(
      "redis://127.0.0.1:6379/0",
    );
    expect(substitute("${EMPTY:-fallback}", env).value).to.equal("fallback");
    expect(substitute("${HOST:-other}", env).value).to.equal("db.local");
    expect(substitute("[${NOPE:-}]", env).value).to.equal("[]");
  });

  it("keeps an empty set variable without a default as empty", () => {
    const r = substitute("x${EMPTY}y", env);
    expect(r.value).to.equal("xy");
    expect(r.problems).to.deep.equal([]);
  });

  it("reads $${ as a literal ${, and leaves other dollars alone", () => {
    const r = substitute("$${HOST} costs $5 and $$ twice, ${HOST}", env);
    expect(r.value).to.equal("${HOST} costs $5 and $$ twice, db.local");
    expect(r.used.map((u) => u.name)).to.deep.equal(["HOST"]);
  });

  it("reports an unset variable without a default, naming it and the fix", () => {
    const r = substitute("${GUESTBOOK_REDIS_URL}", env);
    expect(r.problems).to.deep.equal([
      "variable GUESTBOOK_REDIS_URL is not set (set it, or give a default: ${GUESTBOOK_REDIS_URL:-value})",
    ]);
  });

  it("reports malformed references instead of passing them on", () => {
    expect(substitute("${1BAD}", env).problems[0]).to.match(/is not a variable reference/);
    expect(substitute("${}", env).problems[0]).to.match(/is not a variable reference/);
    expect(substitute("abc ${HOST", env).problems[0]).to.match(/unterminated \$\{/);
  });

  it("never substitutes FIZZ_* variables: a spec must not copy the registry token into an object", () => {
    const r = substitute("${FIZZ_TOKEN}", { FIZZ_TOKEN: "secret-admin-token" });
    expect(r.value).not.to.include("secret-admin-token");
    expect(r.problems[0]).to.match(/^variable FIZZ_TOKEN may not be used: FIZZ_\* variables/);
    expect(substitute("${FIZZ_TOKEN:-x}", {}).problems).to.have.length(1);
  });
});
