import { expect } from "chai";
import { FizzError } from "@fizz/events";
import { Authenticator, loadAuthConfig } from "../src/auth";
import { loadConfig } from "../src/config";

const ADMIN = "admin-token-0123456789";
const READ = "read-token-0123456789";

function refusal(f: () => unknown): FizzError {
  try {
    f();
  } catch (err) {
    expect(err).to.be.instanceOf(FizzError);
    return err as FizzError;
  }
  throw new Error("expected a refusal");
}

describe("registry auth config", () => {
  it("refuses to start without FIZZ_ADMIN_TOKEN, naming it", () => {
    const err = refusal(() => loadConfig({}));
    expect(err.field).to.equal("FIZZ_ADMIN_TOKEN");
    expect(err.message).to.match(/^FIZZ_ADMIN_TOKEN: is required/);
  });

  it("starts without a token only when FIZZ_AUTH_DISABLED=true", () => {
    const c = loadAuthConfig({ FIZZ_AUTH_DISABLED: "true" });
    expect(c).to.include({ authDisabled: true, adminToken: undefined });
  });

  it("refuses a token shorter than 16 characters without echoing it", () => {
    const err = refusal(() => loadAuthConfig({ FIZZ_ADMIN_TOKEN: "short-secret" }));
    expect(err.field).to.equal("FIZZ_ADMIN_TOKEN");
    expect(err.message).to.include("at least 16");
    expect(err.message).not.to.include("short-secret");
  });

  it("refuses tokens with spaces or control characters, and a read token equal to the admin one", () => {
    expect(
      refusal(() => loadAuthConfig({ FIZZ_ADMIN_TOKEN: "has a space in it!!" })).field,
    ).to.equal("FIZZ_ADMIN_TOKEN");
    expect(
      refusal(() =>
        loadAuthConfig({ FIZZ_ADMIN_TOKEN: ADMIN, FIZZ_READ_TOKEN: "tab\tinside-the-token" }),
      ).field,
    ).to.equal("FIZZ_READ_TOKEN");
    const same = refusal(() => loadAuthConfig({ FIZZ_ADMIN_TOKEN: ADMIN, FIZZ_READ_TOKEN: ADMIN }));
    expect(same.field).to.equal("FIZZ_READ_TOKEN");
    expect(same.message).not.to.include(ADMIN);
  });

  it("accepts only exact origins in FIZZ_CORS_ORIGINS", () => {
    const ok = loadAuthConfig({
      FIZZ_ADMIN_TOKEN: ADMIN,
      FIZZ_CORS_ORIGINS: "https://console.example.com, http://localhost:3000",
    });
    expect(ok.corsOrigins).to.deep.equal(["https://console.example.com", "http://localhost:3000"]);
    for (const bad of ["https://console.example.com/", "console.example.com", "*"]) {
      const err = refusal(() =>
        loadAuthConfig({ FIZZ_ADMIN_TOKEN: ADMIN, FIZZ_CORS_ORIGINS: bad }),
      );
      expect(err.field, bad).to.equal("FIZZ_CORS_ORIGINS");
    }
  });

  it("keeps /metrics behind a token unless FIZZ_METRICS_PUBLIC=true", () => {
    expect(loadAuthConfig({ FIZZ_ADMIN_TOKEN: ADMIN }).metricsPublic).to.equal(false);
    expect(
      loadAuthConfig({ FIZZ_ADMIN_TOKEN: ADMIN, FIZZ_METRICS_PUBLIC: "true" }).metricsPublic,
    ).to.equal(true);
  });
});

describe("Authenticator", () => {
  const auth = new Authenticator(
    loadAuthConfig({ FIZZ_ADMIN_TOKEN: ADMIN, FIZZ_READ_TOKEN: READ }),
  );

  it("knows the admin and the read-only token, with any case of the Bearer scheme", () => {
    expect(auth.roleOf(`Bearer ${ADMIN}`)).to.equal("admin");
    expect(auth.roleOf(`bearer ${READ}`)).to.equal("read");
  });

  it("refuses a missing header, another scheme, a prefix, a longer token and a same-length forgery", () => {
    const forged = ADMIN.slice(0, -1) + (ADMIN.endsWith("9") ? "8" : "9");
    for (const header of [
      undefined,
      "",
      `Basic ${Buffer.from(`x:${ADMIN}`).toString("base64")}`,
      ADMIN,
      `Bearer ${ADMIN.slice(0, -1)}`,
      `Bearer ${ADMIN}x`,
      `Bearer ${forged}`,
      `Bearer ${ADMIN} ${READ}`,
    ]) {
      const err = refusal(() => auth.roleOf(header));
      expect(err.code, String(header)).to.equal("UNAUTHENTICATED");
      expect(err.status).to.equal(401);
      expect(err.message).not.to.include(ADMIN);
    }
  });

  it("without a read token configured, nothing is read-only", () => {
    const adminOnly = new Authenticator(loadAuthConfig({ FIZZ_ADMIN_TOKEN: ADMIN }));
    expect(refusal(() => adminOnly.roleOf(`Bearer ${READ}`)).code).to.equal("UNAUTHENTICATED");
  });
});
