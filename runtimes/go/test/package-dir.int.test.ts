// archiveFile naming a package the poolkeeper already extracted (`.fizz-package-<hex>`, a
// directory of this uid holding hard links to root's read-only files: services/poolkeeper/src/
// package-tree.ts): the warm Go instance renames it to fn/ and runs it as it is, with no
// extraction or hash of its own. What it accepts under that name, and what it refuses. The
// test's files stand for the poolkeeper's: owned by another uid (65534) and not writable.
import { expect } from "chai";
import {
  chmodSync,
  chownSync,
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { packageArchive, type Files } from "../../contract/archive.js";
import {
  ARCHIVE_CONTENT_TYPE,
  type Runtime,
  request,
  sha256,
  specializeArchive,
} from "../../contract/harness.js";
import { ME } from "../../contract/runtime-contract.js";
import { HELLO, compile, goRuntime } from "./fixtures.js";

const NAME = `.fizz-package-${"cd".repeat(16)}`;
const NOBODY = 65534;

function packageSpecialize(rt: Runtime, digest: string, archiveFile: string) {
  const line = JSON.stringify({
    function: { namespace: "default", name: "hello", revision: 3 },
    digest,
    archiveFile,
  });
  return request(rt.url, {
    method: "POST",
    path: "/v2/specialize",
    headers: { "content-type": ARCHIVE_CONTENT_TYPE },
    body: Buffer.from(`${line}\n`),
  });
}

describe("go runtime: the package already extracted in its work dir (archiveFile .fizz-package-)", function () {
  this.timeout(180_000);
  let rt: Runtime | undefined;
  let work: string;
  let outside: string;
  let files: Files;
  let archive: Buffer;

  /** The package as the poolkeeper lays it out: files another uid's, read-only; the directory ours. */
  function lay(dir: string, opts: { binaryOwner?: number; binaryMode?: number } = {}): void {
    mkdirSync(dir, { mode: 0o700 });
    for (const [name, body] of Object.entries(files)) {
      const file = join(dir, name);
      writeFileSync(file, body);
      const exec = name === "fizz-function";
      chownSync(file, exec ? (opts.binaryOwner ?? NOBODY) : NOBODY, NOBODY);
      chmodSync(file, exec ? (opts.binaryMode ?? 0o555) : 0o444);
    }
  }

  before(async function () {
    if (process.getuid?.() !== 0) this.skip(); // the poolkeeper's files are another uid's
    this.timeout(900_000);
    files = await compile({ [HELLO.filename]: HELLO.source });
    archive = await packageArchive(files);
  });
  beforeEach(async () => {
    work = mkdtempSync(join(tmpdir(), "fizz-go-apkg-"));
    outside = mkdtempSync(join(tmpdir(), "fizz-go-apkg-out-"));
    rt = await goRuntime.start({ FIZZ_WORKDIR: work });
  });
  afterEach(async () => {
    await rt?.kill();
    rt = undefined;
    rmSync(work, { recursive: true, force: true });
    rmSync(outside, { recursive: true, force: true });
  });

  it("renames the directory to fn/ and runs the binary in it as it is", async () => {
    lay(join(work, NAME));
    const binary = lstatSync(join(work, NAME, "fizz-function"));
    const res = await packageSpecialize(rt!, sha256(archive), NAME);
    expect(res.status, res.text).to.equal(200);
    expect(existsSync(join(work, NAME))).to.equal(false);
    // The very file it was given: not copied, not chmod'ed.
    const ran = lstatSync(join(work, "fn", "fizz-function"));
    expect([ran.ino, ran.uid, ran.mode & 0o7777]).to.deep.equal([binary.ino, NOBODY, 0o555]);
    expect((await request(rt!.url, { headers: ME })).text).to.equal("Hello, world!\n");
  });

  it("refuses a symbolic link planted under the name, even to a valid package, and stays warm", async () => {
    lay(join(outside, "pkg"));
    symlinkSync(join(outside, "pkg"), join(work, NAME));
    const res = await packageSpecialize(rt!, sha256(archive), NAME);
    expect(res.status, res.text).to.equal(400);
    expect(res.object()).to.nested.include({ "error.field": "archiveFile" });
    expect(existsSync(join(work, "fn"))).to.equal(false);
    expect((await specializeArchive(rt!, archive)).status).to.equal(200);
  });

  it("refuses a directory that is not its uid's, and stays warm", async () => {
    lay(join(work, NAME));
    chownSync(join(work, NAME), NOBODY, NOBODY);
    const res = await packageSpecialize(rt!, sha256(archive), NAME);
    expect(res.status, res.text).to.equal(400);
    expect(res.object()).to.nested.include({ "error.field": "archiveFile" });
    expect((await specializeArchive(rt!, archive)).status).to.equal(200);
  });

  for (const [what, opts] of [
    ["its own", { binaryOwner: 0 }],
    ["writable", { binaryMode: 0o775 }],
  ] as const) {
    it(`refuses a binary that is ${what} (not the poolkeeper's read-only file)`, async () => {
      lay(join(work, NAME), opts);
      const res = await packageSpecialize(rt!, sha256(archive), NAME);
      expect(res.status, res.text).to.equal(400);
      expect(res.object()).to.nested.include({ "error.field": "archiveFile" });
      expect(existsSync(join(work, "fn"))).to.equal(false);
    });
  }

  it("refuses a regular file under the name, and a name that is not there", async () => {
    const missing = await packageSpecialize(rt!, sha256(archive), NAME);
    expect(missing.status, missing.text).to.equal(400);
    writeFileSync(join(work, NAME), archive);
    const file = await packageSpecialize(rt!, sha256(archive), NAME);
    expect(file.status, file.text).to.equal(400);
    expect(file.object()).to.nested.include({ "error.field": "archiveFile" });
  });

  it("answers 409 when fn/ is already there, and leaves it", async () => {
    lay(join(work, NAME));
    mkdirSync(join(work, "fn"));
    const res = await packageSpecialize(rt!, sha256(archive), NAME);
    expect(res.status, res.text).to.equal(409);
    expect(existsSync(join(work, NAME, "fizz-function"))).to.equal(true);
  });
});
