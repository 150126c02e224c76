import { expect } from "chai";
import { FizzError, type FunctionSpec } from "@fizz/events";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadSecretBox, parseKey, secretBox } from "../src/secret-box";
import { mergeSpec, parseCreate, parsePatch, type ValidationOptions } from "../src/validation";

const opts: ValidationOptions = { backend: "process", codeMaxBytes: 1024 };
const code = { filename: "a.py", content: Buffer.from("def main(): pass\n").toString("base64") };
const digest = `sha256:${"a".repeat(64)}`;

function refused(fn: () => unknown): FizzError {
  try {
    fn();
  } catch (err) {
    expect(err).to.be.instanceOf(FizzError);
    return err as FizzError;
  }
  throw new Error("expected a FizzError");
}

const fn = (spec: Record<string, unknown>) =>
  parseCreate("functions", { name: "f", spec: { environment: "py", ...spec } }, opts);

describe("functions with packages, env, secrets (unit)", () => {
  it("takes exactly one of code and package", () => {
    expect(fn({ code }).spec).to.have.property("code");
    expect((fn({ package: { name: "app" } }).spec as FunctionSpec).package).to.deep.equal({
      name: "app",
    });
    for (const spec of [{}, { code, package: { name: "app" } }]) {
      const err = refused(() => fn(spec));
      expect(err.code).to.equal("VALIDATION_FAILED");
      expect(err.field).to.equal("spec.code");
      expect(err.message).to.match(/exactly one of code and package/);
    }
  });

  it("never takes a deployment from the client, on create or on patch", () => {
    const digestRef = { digest, size: 1 };
    const create = refused(() => fn({ package: { name: "app", deployment: digestRef } }));
    expect(create.field).to.match(/^spec\.package/);
    const patch = refused(() =>
      parsePatch("functions", { spec: { package: { name: "app", deployment: digestRef } } }, opts),
    );
    expect(patch.code).to.equal("VALIDATION_FAILED");
    expect(patch.field).to.match(/^spec\.package/);
  });

  it("refuses the platform's variables and names that are not variables in spec.env", () => {
    for (const name of [
      "FIZZ_X",
      "FIZZ_SECRETS_DIR",
      "PATH",
      "LD_PRELOAD",
      "1ABC",
      "A-B",
      "A B",
      "",
    ]) {
      const err = refused(() => fn({ code, env: { [name]: "v" } }));
      expect(err.code, name).to.equal("VALIDATION_FAILED");
      expect(err.field, name).to.match(/^spec\.env/);
    }
    expect(
      (fn({ code, env: { API_URL: "https://x", _private: "1" } }).spec as FunctionSpec).env,
    ).to.deep.equal({ API_URL: "https://x", _private: "1" });
  });

  it("switches a patched function between code and package, keeping the deployment of the same package", () => {
    const deployment = { digest, size: 10 };
    const current = { ...fn({ code }).spec } as FunctionSpec;
    const toPkg = mergeSpec(
      "functions",
      current,
      parsePatch("functions", { spec: { package: { name: "app" } } }, opts),
      opts,
    );
    expect(toPkg.code).to.equal(undefined);
    expect(toPkg.package).to.deep.equal({ name: "app" });
    const onPkg = { ...toPkg, package: { name: "app", deployment } };
    const same = mergeSpec(
      "functions",
      onPkg,
      parsePatch("functions", { spec: { package: { name: "app" }, maxInstances: 2 } }, opts),
      opts,
    );
    expect(same.package).to.deep.equal({ name: "app", deployment });
    const other = mergeSpec(
      "functions",
      onPkg,
      parsePatch("functions", { spec: { package: { name: "lib" } } }, opts),
      opts,
    );
    expect(other.package).to.deep.equal({ name: "lib" });
    const back = mergeSpec(
      "functions",
      onPkg,
      parsePatch("functions", { spec: { code } }, opts),
      opts,
    );
    expect(back.package).to.equal(undefined);
    expect(back.code?.filename).to.equal("a.py");
  });
});

describe("secrets and configmaps (unit)", () => {
  it("keeps only the key names of a secret in its spec, and its values apart", () => {
    const req = parseCreate(
      "secrets",
      { name: "db", spec: { data: { password: "aHVudGVyMg==", "user.name": "YWRtaW4=" } } },
      opts,
    );
    expect(req.spec).to.deep.equal({ keys: ["password", "user.name"] });
    expect(req.secretData).to.deep.equal({ password: "aHVudGVyMg==", "user.name": "YWRtaW4=" });
    expect(JSON.stringify(req.spec)).to.not.include("aHVudGVyMg");
  });

  it("refuses bad secret keys and values that are not padded base64", () => {
    for (const key of ["a/b", "..", ".", "", "sp ace", "x".repeat(254)]) {
      const err = refused(() =>
        parseCreate("secrets", { name: "s", spec: { data: { [key]: "YQ==" } } }, opts),
      );
      expect(err.code, key).to.equal("VALIDATION_FAILED");
      expect(err.field, key).to.match(/^spec\.data/);
    }
    for (const value of ["not base64!", "YQ"]) {
      const err = refused(() =>
        parseCreate("secrets", { name: "s", spec: { data: { k: value } } }, opts),
      );
      expect(err.code, value).to.equal("VALIDATION_FAILED");
      expect(err.field, value).to.equal("spec.data.k");
    }
    const keys = refused(() => parseCreate("secrets", { name: "s", spec: { keys: ["k"] } }, opts));
    expect(keys.field).to.equal("spec.keys");
  });

  it("refuses secrets and configmaps over 1 MiB of values", () => {
    const big = Buffer.alloc(1024 * 1024 + 1).toString("base64");
    expect(
      refused(() => parseCreate("secrets", { name: "s", spec: { data: { k: big } } }, opts)).code,
    ).to.equal("PAYLOAD_TOO_LARGE");
    const text = "x".repeat(1024 * 1024 + 1);
    expect(
      refused(() => parseCreate("configmaps", { name: "c", spec: { data: { k: text } } }, opts))
        .code,
    ).to.equal("PAYLOAD_TOO_LARGE");
  });

  it("replaces a secret's keys with a patch's data", () => {
    const patch = parsePatch("secrets", { spec: { data: { token: "dA==" } } }, opts);
    expect(patch.secretData).to.deep.equal({ token: "dA==" });
    expect(mergeSpec("secrets", { keys: ["old"] }, patch, opts)).to.deep.equal({ keys: ["token"] });
  });
});

describe("packages (unit)", () => {
  const source = { digest, size: 100 };
  it("ignores a client's status and refuses source together with deployment", () => {
    const req = parseCreate(
      "packages",
      { name: "p", spec: { environment: "py", source }, status: { buildState: "succeeded" } },
      opts,
    );
    expect(req.spec).to.deep.equal({ environment: "py", source });
    const both = refused(() =>
      parseCreate(
        "packages",
        { name: "p", spec: { environment: "py", source, deployment: source } },
        opts,
      ),
    );
    expect(both.field).to.equal("spec.source");
    const cmd = refused(() =>
      parseCreate(
        "packages",
        { name: "p", spec: { environment: "py", deployment: source, buildCommand: "make" } },
        opts,
      ),
    );
    expect(cmd.field).to.equal("spec.buildCommand");
  });
});

describe("secret box (unit)", () => {
  const key = Buffer.alloc(32, 7);
  it("opens what it sealed, and nothing moved to another secret's name", () => {
    const box = secretBox(key);
    const sealed = box.seal("ns", "db", { password: "aHVudGVyMg==" });
    expect(sealed).to.not.include("aHVudGVyMg");
    expect(box.open("ns", "db", sealed)).to.deep.equal({ password: "aHVudGVyMg==" });
    expect(() => box.open("ns", "other", sealed)).to.throw(FizzError, /cannot be decrypted/);
    expect(() => box.open("other", "db", sealed)).to.throw(FizzError, /cannot be decrypted/);
    expect(() => secretBox(Buffer.alloc(32, 8)).open("ns", "db", sealed)).to.throw(FizzError);
    // Each seal has its own IV: equal values do not give equal ciphertexts.
    expect(box.seal("ns", "db", { password: "aHVudGVyMg==" })).to.not.equal(sealed);
  });

  it("refuses a tampered ciphertext", () => {
    const box = secretBox(key);
    const sealed = JSON.parse(box.seal("ns", "db", { k: "dg==" })) as { ct: string };
    const ct = Buffer.from(sealed.ct, "base64");
    ct[0] = (ct[0] ?? 0) ^ 1;
    const tampered = JSON.stringify({ ...sealed, ct: ct.toString("base64") });
    expect(() => box.open("ns", "db", tampered)).to.throw(FizzError, /cannot be decrypted/);
  });

  it("reads a key file of 32 raw bytes or their base64, and nothing else", () => {
    expect(parseKey(key)?.equals(key)).to.equal(true);
    expect(parseKey(Buffer.from(key.toString("base64") + "\n"))?.equals(key)).to.equal(true);
    expect(parseKey(Buffer.alloc(16))).to.equal(undefined);
    expect(parseKey(Buffer.from(Buffer.alloc(16).toString("base64")))).to.equal(undefined);
    expect(parseKey(Buffer.from("not a key, just some text\n"))).to.equal(undefined);
  });

  it("runs without secrets when the key file is missing, and refuses to start on a bad one", async () => {
    const dir = await mkdtemp(join(tmpdir(), "fizz-key-test-"));
    try {
      const warnings: string[] = [];
      expect(await loadSecretBox(join(dir, "none"), (m) => warnings.push(m))).to.equal(undefined);
      expect(warnings.join()).to.match(/does not exist/);
      const bad = join(dir, "bad");
      await writeFile(bad, "too short\n", { mode: 0o600 });
      const err = await loadSecretBox(bad).then(
        () => undefined,
        (e: unknown) => e as FizzError,
      );
      expect(err?.field).to.equal("FIZZ_SECRETS_KEY_FILE");
      expect(err?.message).to.not.include("too short");
      const open = join(dir, "open");
      await writeFile(open, Buffer.alloc(32, 1), { mode: 0o644 });
      const seen: string[] = [];
      expect(await loadSecretBox(open, (m) => seen.push(m))).to.not.equal(undefined);
      expect(seen.join()).to.match(/readable by others/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
