import { createCipheriv, createDecipheriv, randomBytes } from "node:crypto";
import { readFile, stat } from "node:fs/promises";
import { z } from "zod";
import { FizzError } from "@fizz/events";

/**
 * Secret values at rest: AES-256-GCM with a random 96-bit IV per write and the secret's
 * `<ns>/<name>` as additional authenticated data, so a sealed blob copied onto another secret's key
 * (by someone with Redis write access) fails to open instead of leaking into the wrong function.
 * The plaintext is the JSON `{key: base64}` map. The key never leaves this module's closure.
 */
export interface SecretBox {
  seal(ns: string, name: string, data: Record<string, string>): string;
  open(ns: string, name: string, sealed: string): Record<string, string>;
}

const KEY_BYTES = 32;
const IV_BYTES = 12;

const Sealed = z.object({
  v: z.literal(1),
  iv: z.string(),
  tag: z.string(),
  ct: z.string(),
});

/**
 * Reads FIZZ_SECRETS_KEY_FILE: exactly 32 raw bytes, or text that is the base64 of 32 bytes
 * (surrounding whitespace ignored; `head -c 32 /dev/urandom | base64` makes one). Anything else is
 * refused at start: a wrong key would only show up later as secrets that cannot be read.
 */
export async function loadSecretBox(
  file: string,
  warn: (msg: string) => void = () => undefined,
): Promise<SecretBox | undefined> {
  let raw: Buffer;
  try {
    raw = await readFile(file);
  } catch (err) {
    // Not there (on Kubernetes: the optional fizz-secrets-key Secret was not created): secrets
    // are off, as without the variable, and every secret write or read says so. A file that is
    // there but unreadable or malformed stops the start instead.
    if ((err as NodeJS.ErrnoException).code === "ENOENT") {
      warn(
        `FIZZ_SECRETS_KEY_FILE ${file} does not exist: secrets are disabled until it does (restart the registry after creating it)`,
      );
      return undefined;
    }
    throw new FizzError(
      "VALIDATION_FAILED",
      `FIZZ_SECRETS_KEY_FILE: cannot read ${file}: ${(err as Error).message}`,
      { field: "FIZZ_SECRETS_KEY_FILE", cause: err },
    );
  }
  const key = parseKey(raw);
  if (!key)
    throw new FizzError(
      "VALIDATION_FAILED",
      `FIZZ_SECRETS_KEY_FILE: ${file} must hold 32 raw bytes or their base64 (e.g. head -c 32 /dev/urandom | base64)`,
      { field: "FIZZ_SECRETS_KEY_FILE" },
    );
  const { mode } = await stat(file);
  // World-readable only: on Kubernetes the mounted key is group-readable for the pod's fsGroup.
  if ((mode & 0o007) !== 0)
    warn(
      `FIZZ_SECRETS_KEY_FILE ${file} is readable by others (mode ${(mode & 0o777).toString(8)}); chmod 600 it`,
    );
  return secretBox(key);
}

export function parseKey(raw: Buffer): Buffer | undefined {
  if (raw.length === KEY_BYTES) return Buffer.from(raw);
  const text = raw.toString("latin1").trim();
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(text) || text.length % 4 !== 0) return undefined;
  const key = Buffer.from(text, "base64");
  return key.length === KEY_BYTES ? key : undefined;
}

export function secretBox(key: Buffer): SecretBox {
  if (key.length !== KEY_BYTES) throw new Error(`secret key must be ${KEY_BYTES} bytes`);
  const k = Buffer.from(key);
  const aad = (ns: string, name: string) => Buffer.from(`fizz-secret:${ns}/${name}`, "utf8");
  return {
    seal(ns, name, data) {
      const iv = randomBytes(IV_BYTES);
      const cipher = createCipheriv("aes-256-gcm", k, iv);
      cipher.setAAD(aad(ns, name));
      const ct = Buffer.concat([cipher.update(JSON.stringify(data), "utf8"), cipher.final()]);
      return JSON.stringify({
        v: 1,
        iv: iv.toString("base64"),
        tag: cipher.getAuthTag().toString("base64"),
        ct: ct.toString("base64"),
      });
    },
    open(ns, name, sealed) {
      try {
        const s = Sealed.parse(JSON.parse(sealed));
        const decipher = createDecipheriv("aes-256-gcm", k, Buffer.from(s.iv, "base64"));
        decipher.setAAD(aad(ns, name));
        decipher.setAuthTag(Buffer.from(s.tag, "base64"));
        const pt = Buffer.concat([decipher.update(Buffer.from(s.ct, "base64")), decipher.final()]);
        return z.record(z.string(), z.string()).parse(JSON.parse(pt.toString("utf8")));
      } catch {
        // No cause: a JSON or schema error could quote the plaintext. Only that it did not open.
        throw new FizzError(
          "INTERNAL",
          `secret ${ns}/${name} cannot be decrypted (wrong FIZZ_SECRETS_KEY_FILE, or the stored value was altered)`,
        );
      }
    },
  };
}

/** The error for a secret write when no key is configured. */
export function noSecretKey(): FizzError {
  return new FizzError(
    "UNAVAILABLE",
    "secrets are disabled on this registry: FIZZ_SECRETS_KEY_FILE (the key secret values are encrypted with) is not set, or its file does not exist",
    { field: "FIZZ_SECRETS_KEY_FILE" },
  );
}
