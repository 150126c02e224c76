import { existsSync } from "node:fs";
import { chromium, type Browser } from "playwright-core";

const CHROMIUM = "/usr/bin/chromium";

/** Fails (never skips) when Debian's Chromium is missing: the browser suites cannot pass without it. */
export function requireChromium(): void {
  if (!existsSync(CHROMIUM))
    throw new Error(
      `${CHROMIUM} is missing: this test drives Debian's Chromium (apt-get install chromium)`,
    );
}

/** Headless Debian Chromium for the browser suites (console, guestbook). */
export function launchChromium(): Promise<Browser> {
  requireChromium();
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    // No sandbox: tests run as root. The rest keeps Chromium from calling home during the test.
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
}
