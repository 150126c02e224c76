// The runtime's SHA-256 (src/sha256.mjs, @noble/hashes) against node:crypto: it vouches for the code an
// instance loads and compares the specialize token, so a wrong digest for any input is a hole.
import { createHash, randomBytes } from "node:crypto";
import { expect } from "chai";
import { equalSecrets, sha256, sha256Digest, SMALL_INPUT_BYTES } from "../src/sha256.mjs";

const reference = (data: Uint8Array) => createHash("sha256").update(data).digest("hex");

describe("node runtime: sha256.mjs", () => {
  it("matches node:crypto for every length up to three blocks and past the padding boundaries", () => {
    for (let n = 0; n <= 200; n++) {
      const data = randomBytes(n);
      expect(Buffer.from(sha256(data)).toString("hex"), `length ${n}`).to.equal(reference(data));
    }
  });

  it("matches the FIPS 180-4 examples", () => {
    expect(Buffer.from(sha256(Buffer.from("abc"))).toString("hex")).to.equal(
      "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
    );
    const two = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    expect(Buffer.from(sha256(Buffer.from(two))).toString("hex")).to.equal(
      "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1",
    );
  });

  it("sha256Digest is the same on both sides of the node:crypto threshold", async () => {
    for (const n of [
      0,
      1,
      SMALL_INPUT_BYTES - 1,
      SMALL_INPUT_BYTES,
      SMALL_INPUT_BYTES + 1,
      100_000,
    ]) {
      const data = randomBytes(n);
      expect(await sha256Digest(data), `length ${n}`).to.equal(`sha256:${reference(data)}`);
    }
  });

  it("digests a Buffer that views part of a larger one, as Buffer.from(base64) gives small code", async () => {
    // validate.mjs decodes `code` with Buffer.from(_, "base64"): below 4 KiB that is a slice of
    // Node's shared pool (byteOffset > 0), the form every empty-pool specialize hashes.
    for (const n of [0, 1, 55, 56, 63, 64, 65, 500, SMALL_INPUT_BYTES - 1, SMALL_INPUT_BYTES]) {
      const raw = randomBytes(n);
      const pooled = Buffer.from(raw.toString("base64"), "base64");
      const inner = Buffer.concat([Buffer.from("pre"), raw, Buffer.from("post")]).subarray(
        3,
        3 + n,
      );
      expect(inner.byteOffset, `length ${n}`).to.be.above(0);
      for (const view of [pooled, inner]) {
        expect(await sha256Digest(view), `length ${n}`).to.equal(`sha256:${reference(raw)}`);
      }
    }
  });

  it("equalSecrets: equal only for the same string, whatever the lengths", () => {
    const token = randomBytes(32).toString("base64url");
    expect(equalSecrets(token, token)).to.equal(true);
    expect(equalSecrets(token, `${token.slice(0, -1)}${token.endsWith("A") ? "B" : "A"}`)).to.equal(
      false,
    );
    expect(equalSecrets(token, token.slice(0, -1))).to.equal(false);
    expect(equalSecrets(token, `${token}x`)).to.equal(false);
    expect(equalSecrets(token, "")).to.equal(false);
    expect(equalSecrets("é", "é")).to.equal(true);
    expect(equalSecrets("é", "e")).to.equal(false);
  });
});
