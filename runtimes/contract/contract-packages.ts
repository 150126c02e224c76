// The runtime contract (docs/runtime-contract.md), part 3: the archive form of specialize. A
// package of several files loads through its entry point; an archive that does not hash to its
// digest, or that holds anything but regular files and directories, is refused before anything
// in it loads, and the instance stays warm with nothing left behind.
import { randomBytes } from "node:crypto";
import { existsSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { expect } from "chai";
import { type RawEntry, packageArchive, rawArchive } from "./archive.js";
import {
  ARCHIVE_CONTENT_TYPE,
  type Runtime,
  request,
  sha256,
  specializeArchive,
} from "./harness.js";
import { ME, healthState, push } from "./contract-lifecycle.js";
import { type Deployer, topLevel } from "./deploy.js";
import type { RuntimeUnderTest } from "./runtime-under-test.js";

export function describePackages({ start, fixtures }: RuntimeUnderTest, deploy: Deployer): void {
  const { packages } = fixtures;

  describe("a package (archive form)", () => {
    let rt: Runtime | undefined;
    afterEach(() => rt?.kill());

    for (const shape of packages.shapes) {
      it(`loads ${shape.what}`, async () => {
        rt = await start({ FIZZ_INSTANCE_ID: "inst-1" });
        const entrypoint = shape.entrypoint === undefined ? {} : { entrypoint: shape.entrypoint };
        const files = await deploy.files(shape.files, shape.entrypoint);
        const archive = await packageArchive(files);
        const res = await specializeArchive(rt, archive, { instanceId: "inst-1", ...entrypoint });
        expect(res.status, res.text).to.equal(200);
        expect(res.object().status).to.equal("specialized");
        expect((await request(rt.url, { headers: ME })).text).to.equal(shape.answer);
      });
    }

    it("names the package's file and line when a module the entry imports does not load", async () => {
      rt = await start();
      const { files, entrypoint, message } = packages.loadFailure;
      const options = entrypoint === undefined ? {} : { entrypoint };
      const res = await deploy.package(rt, files, options);
      expect(res.status).to.equal(500);
      expect(res.error().code).to.equal("FUNCTION_LOAD_FAILED");
      expect(res.error().message).to.match(message);
      expect(await healthState(rt)).to.equal("failed");
    });

    it("takes the body chunked as well, split anywhere", async () => {
      const [shape] = packages.shapes;
      if (!shape) throw new Error("no package shapes");
      rt = await start();
      const entrypoint = shape.entrypoint === undefined ? {} : { entrypoint: shape.entrypoint };
      const archive = await packageArchive(await deploy.files(shape.files, shape.entrypoint));
      const res = await specializeArchive(rt, archive, { ...entrypoint, chunked: true });
      expect(res.status, res.text).to.equal(200);
      expect((await request(rt.url, { headers: ME })).text).to.equal(shape.answer);
    });

    it("reads files relative to the package's directory", async () => {
      rt = await start();
      // The data file is part of the deployed package, compiled or not.
      const code = await deploy.files({ [packages.main]: packages.configReader.source });
      const files = { ...code, "data.txt": "package data" };
      expect((await specializeArchive(rt, await packageArchive(files))).status).to.equal(200);
      const res = await request(rt.url, { path: "/?kind=relative&path=data.txt", headers: ME });
      expect(res.text).to.equal("package data");
    });
  });

  describe("archives it refuses", () => {
    let rt: Runtime;
    let workdir: string;
    let good: Buffer;
    let deployed: string[];
    const main = (body: string): RawEntry => ({ path: packages.main, body });
    before(async () => {
      workdir = mkdtempSync(join(tmpdir(), "fizz-runtime-archive-"));
      rt = await start({ FIZZ_INSTANCE_ID: "inst-1", FIZZ_WORKDIR: workdir });
      const files = await deploy.files({ [packages.main]: packages.configReader.source });
      deployed = topLevel(files);
      good = await packageArchive(files);
    });
    after(async () => {
      await rt.kill();
      rmSync(workdir, { recursive: true, force: true });
    });

    /** Refused, and the instance is as before: warm, no fn/ directory, nothing written. */
    async function expectRefused(res: Awaited<ReturnType<typeof request>>, code: string) {
      expect(res.status, res.text).to.be.oneOf([400, 413, 421]);
      expect(res.error().code, res.text).to.equal(code);
      expect(await healthState(rt)).to.equal("warm");
      expect(readdirSync(workdir)).to.not.include("fn");
      return res.error();
    }

    it("refuses an archive that does not hash to its digest, removes it, and stays warm", async () => {
      const res = await specializeArchive(rt, good, { digest: sha256("something else") });
      const error = await expectRefused(res, "DIGEST_MISMATCH");
      expect(error.field).to.equal("digest");
    });

    it("refuses an entry that climbs out of the package (../x) with ARCHIVE_UNSAFE", async () => {
      const archive = rawArchive([main("x"), { path: "../x", body: "escaped" }]);
      const error = await expectRefused(await specializeArchive(rt, archive), "ARCHIVE_UNSAFE");
      expect(error.message).to.include('"../x"');
      expect(existsSync(join(workdir, "x"))).to.equal(false);
      const nested = rawArchive([{ path: "lib/../../y", body: "escaped" }]);
      await expectRefused(await specializeArchive(rt, nested), "ARCHIVE_UNSAFE");
    });

    it("refuses an absolute path", async () => {
      const archive = rawArchive([{ path: `${workdir}/abs`, body: "x" }]);
      await expectRefused(await specializeArchive(rt, archive), "ARCHIVE_UNSAFE");
      expect(existsSync(join(workdir, "abs"))).to.equal(false);
    });

    it("refuses symlinks and hard links, whatever they point at", async () => {
      const links: RawEntry[] = [
        { path: "passwd", type: "SymbolicLink", linkpath: "/etc/passwd" },
        { path: "inside", type: "SymbolicLink", linkpath: packages.main },
        { path: "hard", type: "Link", linkpath: packages.main },
      ];
      for (const link of links) {
        const archive = rawArchive([main("x"), link]);
        const error = await expectRefused(await specializeArchive(rt, archive), "ARCHIVE_UNSAFE");
        expect(error.message).to.include(JSON.stringify(link.path));
      }
    });

    it("refuses devices and FIFOs, duplicate entries, and a file under a file", async () => {
      const cases: RawEntry[][] = [
        [{ path: "fifo", type: "FIFO" }],
        [{ path: "null", type: "CharacterDevice" }],
        [main("a"), main("b")],
        [main("a"), { path: `${packages.main}/inner`, body: "b" }],
      ];
      for (const entries of cases) {
        const res = await specializeArchive(rt, rawArchive(entries));
        await expectRefused(res, "ARCHIVE_UNSAFE");
      }
    });

    it("refuses a body that is not a gzip'd tar", async () => {
      for (const bytes of [Buffer.from("not an archive at all"), Buffer.alloc(0)]) {
        const res = await specializeArchive(rt, bytes);
        await expectRefused(res, "ARCHIVE_UNSAFE");
      }
    });

    it("refuses a malformed first line with 400 VALIDATION_FAILED naming the field", async () => {
      const post = (body: string | Buffer) =>
        request(rt.url, {
          method: "POST",
          path: "/v2/specialize",
          headers: { "content-type": ARCHIVE_CONTENT_TYPE },
          body,
        });
      const fn = { namespace: "default", name: "hello", revision: 3 };
      const cases: Array<[string | Buffer, string]> = [
        ['{"function": 1', "body"], // no newline at all
        ["not json\n", "body"],
        [Buffer.concat([Buffer.from(`${JSON.stringify({ function: fn })}\n`), good]), "digest"],
        [`${JSON.stringify({ function: fn, digest: sha256(good), code: "eA==" })}\n`, "code"],
        [
          `${JSON.stringify({ function: fn, digest: sha256(good), entrypoint: "../a.b" })}\n`,
          "entrypoint",
        ],
      ];
      for (const [body, field] of cases) {
        const res = await post(body);
        expect(res.status, res.text).to.equal(400);
        expect(res.error()).to.include({ code: "VALIDATION_FAILED", field });
      }
      const long = `{"x": "${"a".repeat(4 * 1024 * 1024)}"}\n`;
      const tooLong = await post(long);
      expect(tooLong.status).to.equal(400);
      expect(tooLong.error()).to.include({ code: "VALIDATION_FAILED", field: "body" });
      expect(await healthState(rt)).to.equal("warm");
    });

    it("answers 421 to an archive for another instance without extracting it", async () => {
      const res = await specializeArchive(rt, good, { instanceId: "inst-2" });
      await expectRefused(res, "MISDIRECTED");
    });

    it("then specializes with a good archive, and refuses a second specialize with 409", async () => {
      const res = await specializeArchive(rt, good, { instanceId: "inst-1" });
      expect(res.status, res.text).to.equal(200);
      expect(readdirSync(join(workdir, "fn")).sort()).to.deep.equal(deployed);
      const call = await request(rt.url, { path: "/?kind=env&name=GREETING", headers: ME });
      expect(call.text).to.equal("unset");
      for (const again of [() => specializeArchive(rt, good), () => push(rt, fixtures.hello)]) {
        const refused = await again();
        expect(refused.status).to.equal(409);
        expect(refused.error().code).to.equal("ALREADY_SPECIALIZED");
      }
      expect(readdirSync(join(workdir, "fn")).sort()).to.deep.equal(deployed);
    });
  });

  describe("with FIZZ_MAX_PACKAGE_BYTES and FIZZ_MAX_PACKAGE_ENTRIES", () => {
    let rt: Runtime;
    before(async () => {
      rt = await start({ FIZZ_MAX_PACKAGE_BYTES: "4096", FIZZ_MAX_PACKAGE_ENTRIES: "3" });
    });
    after(() => rt.kill());

    it("refuses more entries than allowed with ARCHIVE_UNSAFE", async () => {
      const entries = [1, 2, 3, 4].map((i) => ({ path: `f${i}`, body: "x" }));
      const res = await specializeArchive(rt, rawArchive(entries));
      expect(res.error().code).to.equal("ARCHIVE_UNSAFE");
      expect(res.error().message).to.include('"f4"');
    });

    it("refuses files that unpack to more bytes than allowed (a small gzip bomb)", async () => {
      const archive = rawArchive([{ path: "zeros", body: "\0".repeat(64 * 1024) }]);
      expect(archive.length).to.be.below(4096);
      const res = await specializeArchive(rt, archive);
      expect(res.error().code).to.equal("ARCHIVE_UNSAFE");
      expect(res.error().message).to.include('"zeros"');
    });

    it("refuses a body over the limit with 413 PAYLOAD_TOO_LARGE, and stays warm", async () => {
      const archive = await packageArchive({ noise: randomBytes(8192) });
      expect(archive.length).to.be.above(4096);
      const res = await specializeArchive(rt, archive);
      expect(res.status).to.equal(413);
      expect(res.error().code).to.equal("PAYLOAD_TOO_LARGE");
      expect(await healthState(rt)).to.equal("warm");
    });
  });
}
