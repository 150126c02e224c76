// @ts-check
/**
 * SHA-256 (FIPS 180-4) for the single-file specialize: the code's digest check and the token
 * comparison. Why not node:crypto: loading it costs ~5-10 ms of CPU (measured on 2 cores: its
 * public module evaluates the whole crypto layer), and an instance started for a waiting
 * specialize (empty pool) pays it on the request's path, for a few hundred bytes to hash. Inputs
 * over SMALL_INPUT_BYTES still go to node:crypto; the archive form and the rehearsal use it
 * directly. Tested against node:crypto on every length up to three blocks and across the
 * threshold (test/sha256.unit.test.ts).
 */

/**
 * Above this, node:crypto: this code runs unoptimized (once per instance), and hashing 4 KiB took
 * about a fifth of loading node:crypto, 16 KiB about as long.
 */
export const SMALL_INPUT_BYTES = 4 * 1024;

const K = new Int32Array([
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
  0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
  0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
  0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
  0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
  0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
  0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
  0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
]);

/**
 * The digest of `data`, in pure JavaScript whatever its size.
 * @param {Uint8Array} data
 * @returns {Uint8Array} 32 bytes
 */
export function sha256(data) {
  const bitLength = data.length * 8;
  // The message, a 1 bit, zeros, and the 64-bit length: a whole number of 64-byte blocks.
  const padded = new Uint8Array(Math.ceil((data.length + 9) / 64) * 64);
  padded.set(data);
  padded[data.length] = 0x80;
  const view = new DataView(padded.buffer);
  // Lengths up to 2^53 bits: the high word from a division, the low one from the remainder.
  view.setUint32(padded.length - 8, Math.floor(bitLength / 0x100000000));
  view.setUint32(padded.length - 4, bitLength >>> 0);
  let h0 = 0x6a09e667;
  let h1 = 0xbb67ae85;
  let h2 = 0x3c6ef372;
  let h3 = 0xa54ff53a;
  let h4 = 0x510e527f;
  let h5 = 0x9b05688c;
  let h6 = 0x1f83d9ab;
  let h7 = 0x5be0cd19;
  const w = new Int32Array(64);
  for (let offset = 0; offset < padded.length; offset += 64) {
    for (let i = 0; i < 16; i++) w[i] = view.getInt32(offset + i * 4);
    for (let i = 16; i < 64; i++) {
      const x = /** @type {number} */ (w[i - 15]);
      const y = /** @type {number} */ (w[i - 2]);
      const s0 = ((x >>> 7) | (x << 25)) ^ ((x >>> 18) | (x << 14)) ^ (x >>> 3);
      const s1 = ((y >>> 17) | (y << 15)) ^ ((y >>> 19) | (y << 13)) ^ (y >>> 10);
      const back16 = /** @type {number} */ (w[i - 16]);
      const back7 = /** @type {number} */ (w[i - 7]);
      w[i] = (back16 + s0 + back7 + s1) | 0;
    }
    let a = h0;
    let b = h1;
    let c = h2;
    let d = h3;
    let e = h4;
    let f = h5;
    let g = h6;
    let hh = h7;
    for (let i = 0; i < 64; i++) {
      const S1 = ((e >>> 6) | (e << 26)) ^ ((e >>> 11) | (e << 21)) ^ ((e >>> 25) | (e << 7));
      const t1 =
        (hh +
          S1 +
          ((e & f) ^ (~e & g)) +
          /** @type {number} */ (K[i]) +
          /** @type {number} */ (w[i])) |
        0;
      const S0 = ((a >>> 2) | (a << 30)) ^ ((a >>> 13) | (a << 19)) ^ ((a >>> 22) | (a << 10));
      const t2 = (S0 + ((a & b) ^ (a & c) ^ (b & c))) | 0;
      hh = g;
      g = f;
      f = e;
      e = (d + t1) | 0;
      d = c;
      c = b;
      b = a;
      a = (t1 + t2) | 0;
    }
    h0 = (h0 + a) | 0;
    h1 = (h1 + b) | 0;
    h2 = (h2 + c) | 0;
    h3 = (h3 + d) | 0;
    h4 = (h4 + e) | 0;
    h5 = (h5 + f) | 0;
    h6 = (h6 + g) | 0;
    h7 = (h7 + hh) | 0;
  }
  const out = new Uint8Array(32);
  const outView = new DataView(out.buffer);
  [h0, h1, h2, h3, h4, h5, h6, h7].forEach((v, i) => outView.setInt32(i * 4, v));
  return out;
}

/**
 * `sha256:<hex>` of `data`: in JavaScript when small, else through node:crypto (loaded then).
 * @param {Uint8Array} data
 * @returns {Promise<string>}
 */
export async function sha256Digest(data) {
  if (data.length <= SMALL_INPUT_BYTES)
    return `sha256:${Buffer.from(sha256(data)).toString("hex")}`;
  const { createHash } = await import("node:crypto");
  return `sha256:${createHash("sha256").update(data).digest("hex")}`;
}

/**
 * Whether two strings are equal, in time independent of where they differ and of their lengths:
 * both are hashed first, then all 32 bytes compared (what timingSafeEqual over two digests did).
 * @param {string} expected
 * @param {string} given
 */
export function equalSecrets(expected, given) {
  const a = sha256(Buffer.from(expected, "utf8"));
  const b = sha256(Buffer.from(given, "utf8"));
  let diff = 0;
  for (let i = 0; i < 32; i++) diff |= /** @type {number} */ (a[i]) ^ /** @type {number} */ (b[i]);
  return diff === 0;
}
