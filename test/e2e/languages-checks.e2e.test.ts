import { expect } from "chai";
import { languageColdFailures } from "../../bench/language-cold";
import { LANGUAGES } from "./languages/cases";

/**
 * The checks around the per-language suites, without a platform: a language's availability is
 * the poolkeeper's (the set-up's probe, FIZZ_RUBY & co.), and the bench fails on a language it
 * could not measure.
 */
describe("per-language checks: availability as the poolkeeper sees it, bench failures", function () {
  this.timeout(60_000);

  it("reports ruby unavailable with the probe's reason when FIZZ_RUBY, which the poolkeeper runs, points at no program", async () => {
    const ruby = LANGUAGES.find((c) => c.lang === "ruby");
    const saved = process.env.FIZZ_RUBY;
    process.env.FIZZ_RUBY = "/nonexistent/fizz-ruby";
    try {
      const why = await ruby!.unavailable();
      expect(why).to.match(/^\/nonexistent\/fizz-ruby not found; needs /);
    } finally {
      if (saved === undefined) delete process.env.FIZZ_RUBY;
      else process.env.FIZZ_RUBY = saved;
    }
  });

  it("reports php unavailable when FIZZ_PHP runs a program that fails the probe", async () => {
    const php = LANGUAGES.find((c) => c.lang === "php");
    const saved = process.env.FIZZ_PHP;
    process.env.FIZZ_PHP = "/bin/false";
    try {
      expect(await php!.unavailable()).to.match(/^php check failed; needs /);
    } finally {
      if (saved === undefined) delete process.env.FIZZ_PHP;
      else process.env.FIZZ_PHP = saved;
    }
  });

  it("the bench names a FAIL line for each language not measured or with failed requests, and none for measured ones", () => {
    const ok = { p50_ms: 10, p99_ms: 20, samples: 30, errors: 0 };
    const lines = languageColdFailures({
      go: ok,
      php: { p50_ms: NaN, p99_ms: NaN, samples: 0, errors: 0, error: "php not found\nmore" },
      ruby: { ...ok, errors: 2 },
    });
    expect(lines).to.deep.equal([
      "FAIL cold.php: not measured: php not found",
      "FAIL cold.ruby: 2 of its requests failed",
    ]);
    expect(languageColdFailures({ go: ok, dotnet: ok })).to.deep.equal([]);
  });
});
