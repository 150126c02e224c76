import { mkdir, stat } from "node:fs/promises";
import path from "node:path";
import { expect } from "chai";
import type { Browser, BrowserContext, Page } from "playwright-core";
import { launchChromium, requireChromium } from "./browser";
import { ROOT, startPlatform, type Platform } from "./helpers";
import { dumpLogsOnFailure } from "./probes";

/** CI keeps test/artifacts/ (console/*.png here) as the run's artifacts. */
const ARTIFACTS = path.join(ROOT, "test", "artifacts", "console");
/** If the page ever rendered this as markup, the handler would set window.__pwned. */
const ATTACK = `<img src=x onerror="window.__pwned=1">`;
/** What the page-side callbacks use (this file is type-checked without the DOM library). */
interface BrowserGlobals {
  sessionStorage: { getItem(key: string): string | null };
}
const LOG_LINE = "console-e2e: hello from the function";

const FUNCTION = `module.exports = async (context) => {
  console.log(${JSON.stringify(LOG_LINE)});
  console.log(${JSON.stringify(ATTACK)});
  return { status: 200, headers: { "content-type": "text/plain" }, body: "echo: " + String(context.body ?? "") };
};
`;

/**
 * The web console in a real browser (headless Chromium) against the whole platform as `npm start`
 * runs it: the registry serves /console/, the page signs in with the admin token and shows what
 * the platform knows, its charts, its live log and what a call answers.
 */
describe("the web console in a real browser (headless Chromium)", function () {
  this.timeout(240_000);
  let p: Platform | undefined;
  let browser: Browser | undefined;
  let context: BrowserContext | undefined;
  let page: Page;
  /** Console errors and uncaught exceptions of every page in this suite. */
  const problems: string[] = [];
  /** Every URL the page requested: the token must never be in one. */
  const requested: string[] = [];
  /** While the sign-in test sends a wrong token on purpose, Chromium's log of that 401 is expected. */
  let wrongTokenSent = false;

  before(async () => {
    requireChromium();
    p = await startPlatform({
      FIZZ_SPECIALIZE_TIMEOUT_MS: "60000",
      FIZZ_LEASE_TIMEOUT_MS: "90000",
    });
    browser = await launchChromium();
    context = await browser.newContext({ viewport: { width: 1200, height: 900 } });
    context.setDefaultTimeout(90_000);
    page = await context.newPage();
    page.on("console", (m) => {
      if (m.type() !== "error") return;
      if (wrongTokenSent && /status of 401/.test(m.text())) return;
      problems.push(`console: ${m.text()}`);
    });
    page.on("pageerror", (e) => problems.push(`pageerror: ${e.message}`));
    page.on("request", (r) => requested.push(r.url()));
  });

  after(async () => {
    await context?.close();
    await browser?.close();
    await p?.stop();
  });
  afterEach(dumpLogsOnFailure(() => p, 120));
  afterEach(async function () {
    if (this.currentTest?.state === "failed")
      await shot(`failed-${this.currentTest.title.slice(0, 40).replace(/\W+/g, "-")}`);
  });

  /** Polls `check` (in this process) until it holds; the mocha timeout bounds it. */
  async function until(check: () => Promise<boolean>) {
    while (!(await check())) await new Promise((r) => setTimeout(r, 100));
  }

  const consoleUrl = () => `${p!.registryUrl}/console/`;
  async function shot(name: string) {
    await mkdir(ARTIFACTS, { recursive: true });
    const file = path.join(ARTIFACTS, `${name}.png`);
    await page.screenshot({ path: file, fullPage: true });
    expect((await stat(file)).size).to.be.greaterThan(0);
  }

  it("asks for the token; a wrong one keeps the sign-in form, the admin token opens the (still empty) function list", async () => {
    const res = await page.goto(consoleUrl());
    expect(res?.status()).to.equal(200);
    expect(res?.headers()["content-security-policy"]).to.contain("script-src 'self'");
    await page.waitForSelector("#signin");
    await shot("sign-in");
    wrongTokenSent = true;
    await page.fill("#token", "not-the-token-0123456789");
    await page.click("#signin button[type=submit]");
    // The 401 sends the page back to a fresh sign-in form and forgets the token.
    await until(
      async () =>
        (await page.evaluate(() =>
          (globalThis as unknown as BrowserGlobals).sessionStorage.getItem("fizz.token"),
        )) === null,
    );
    await page.waitForSelector("#signin");
    await page.fill("#token", p!.adminToken);
    await page.click("#signin button[type=submit]");
    await page.waitForSelector("#functions");
    wrongTokenSent = false;
    // Nothing is deployed yet: the listing says so and how to start.
    expect(await page.textContent("#functions .empty")).to.contain("No functions yet");
    expect(problems).to.deep.equal([]);
  });

  it("lists functions of every namespace, a name used twice as two rows, without console errors", async () => {
    const code = await p!.file("echo.js", FUNCTION);
    for (const args of [
      ["env", "create", "--name", "node", "--image", "fizz/env-node"],
      ["fn", "create", "--name", "echo", "--env", "node", "--code", code, "--route", "/echo"],
      // A second namespace: the same names, an environment with no warm pool.
      [
        "-n",
        "team-b",
        "env",
        "create",
        "--name",
        "node",
        "--image",
        "fizz/env-node",
        "--poolsize",
        "0",
      ],
      ["-n", "team-b", "fn", "create", "--name", "echo", "--env", "node", "--code", code],
    ]) {
      const r = await p!.fizz(...args);
      expect(r.code, `fizz ${args.join(" ")}\n${r.stdout}\n${r.stderr}`).to.equal(0);
    }
    await page.reload();
    const rows = page.locator("#functions tbody tr");
    await until(async () => (await rows.count()) === 2);
    const cells = await Promise.all([0, 1].map((i) => rows.nth(i).locator("td").allTextContents()));
    const byNs = new Map(cells.map((c) => [c[1], c]));
    expect(byNs.get("default")?.slice(0, 3)).to.deep.equal(["echo", "default", "node"]);
    expect(byNs.get("default")?.[3]).to.contain("/echo");
    expect(byNs.get("team-b")?.slice(0, 3)).to.deep.equal(["echo", "team-b", "node"]);
    await shot("functions");
    expect(problems).to.deep.equal([]);
  });

  it("after traffic, the function's chart counts the requests", async () => {
    for (let i = 0; i < 20; i++) {
      const res = await fetch(`${p!.gatewayUrl}/echo`, { method: "POST", body: `call ${i}` });
      expect(res.status, await res.text()).to.equal(200);
    }
    await page.click("#functions a[href='#/fn/default/echo']");
    await page.waitForSelector("#function");
    expect(await page.textContent("#fn-environment")).to.equal("node");
    // The page refreshes its stats every few seconds; the gateways' history has the 20 calls.
    // (A locator, not waitForFunction: the page's CSP forbids the eval that would need.)
    await page.locator("#totals", { hasText: /^([2-9]\d|\d{3,}) requests/ }).waitFor();
    // Something is drawn: the invocations chart has a line.
    expect(await page.locator("#charts svg path.line").count()).to.be.greaterThan(0);
    await shot("function");
    expect(problems).to.deep.equal([]);
  });

  it("shows a line the function printed in the live log tail", async () => {
    await page.locator("#logs .log-line", { hasText: LOG_LINE }).first().waitFor();
    expect(problems).to.deep.equal([]);
  });

  it("the invoke form shows the function's status, headers and body", async () => {
    await page.selectOption("#invoke-method", "POST");
    await page.fill("#invoke-headers", "Content-Type: text/plain");
    await page.fill("#invoke-body", "ping from the console");
    await page.click("#invoke button[type=submit]");
    await page.waitForSelector("#invoke-status");
    expect(await page.textContent("#invoke-status")).to.equal("200");
    expect(await page.textContent("#invoke-answer-body")).to.equal("echo: ping from the console");
    expect(await page.textContent("#invoke-answer-headers")).to.contain("content-type: text/plain");
    await shot("invoke");
    expect(problems).to.deep.equal([]);
  });

  it("shows markup from a log line and from an answer as text, and runs nothing", async () => {
    // The check can see an attack: the same markup in a plain page does run.
    const control = await context!.newPage();
    await control.setContent(ATTACK);
    await control.waitForFunction(() => "__pwned" in globalThis);
    await control.close();

    await page.locator("#logs .log-line .text", { hasText: ATTACK }).first().waitFor();
    await page.fill("#invoke-body", ATTACK);
    await page.click("#invoke button[type=submit]");
    await page.locator("#invoke-answer-body", { hasText: ATTACK }).waitFor();
    expect(await page.textContent("#invoke-answer-body")).to.equal(`echo: ${ATTACK}`);
    expect(await page.locator("#app img").count()).to.equal(0);
    expect(await page.evaluate(() => "__pwned" in globalThis)).to.equal(false);
    await shot("xss-as-text");
    expect(problems).to.deep.equal([]);
  });

  it("the pools page shows each namespace's environment: instances of one, an empty pool of the other", async () => {
    await page.click("nav a[href='#/pools']");
    const row = page.locator("#pools tr", { hasText: "default" });
    await row.waitFor();
    const [ns, env, warm, specialized, total] = await row.locator("td").allTextContents();
    expect([ns, env]).to.deep.equal(["default", "node"]);
    expect(Number(total)).to.be.greaterThan(0);
    expect(Number(total)).to.equal(Number(warm) + Number(specialized));
    const idle = await page
      .locator("#pools tr", { hasText: "team-b" })
      .locator("td")
      .allTextContents();
    expect(idle).to.deep.equal(["team-b", "node", "0", "0", "0"]);
    await shot("pools");
    expect(problems).to.deep.equal([]);
  });

  it("a malformed link shows the functions list instead of an error", async () => {
    await page.goto(`${consoleUrl()}#/fn/%E0%A4/echo`);
    await page.waitForSelector("#functions");
    expect(problems).to.deep.equal([]);
  });

  it("lists functions a page at a time: Load more appends the next page until the last", async () => {
    // 100 more (in a namespace sorting last), so the listing is past the console's page of 100.
    const post = async (path: string, body: unknown) => {
      const res = await fetch(`${p!.registryUrl}/v1/namespaces/team-c/${path}`, {
        method: "POST",
        headers: { authorization: `Bearer ${p!.adminToken}`, "content-type": "application/json" },
        body: JSON.stringify(body),
      });
      expect(res.status, await res.text()).to.equal(201);
    };
    await post("environments", { name: "node", spec: { image: "fizz/env-node", poolSize: 0 } });
    const content = Buffer.from(FUNCTION).toString("base64");
    for (let i = 0; i < 100; i++)
      await post("functions", {
        name: `f-${String(i).padStart(3, "0")}`,
        spec: { environment: "node", code: { filename: "f.js", content } },
      });
    await page.goto(consoleUrl());
    const rows = page.locator("#functions tbody tr");
    await until(async () => (await rows.count()) === 100);
    await page.click("#functions-more");
    await until(async () => (await rows.count()) === 102);
    expect(await rows.nth(101).locator("td").first().textContent()).to.equal("f-099");
    expect(await page.locator("#functions-more").isHidden()).to.equal(true);
    expect(problems).to.deep.equal([]);
  });

  it("never put the token in a URL", () => {
    expect(requested.length).to.be.greaterThan(0);
    for (const url of requested) expect(url).to.not.contain(p!.adminToken);
  });
});
