// The archive form's `archiveFile`: the poolkeeper hard-links its cached copy of the deployment
// into the instance's own work dir and names it in the line, instead of streaming 6 MB through
// the instance's socket. What the warm Go instance accepts under that name, and what it refuses.
import { expect } from "chai";
import { spawnSync } from "node:child_process";
import {
  existsSync,
  mkdtempSync,
  readdirSync,
  readlinkSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { packageArchive } from "../../contract/archive.js";
import {
  ARCHIVE_CONTENT_TYPE,
  type Runtime,
  request,
  sha256,
  specializeArchive,
} from "../../contract/harness.js";
import { ME } from "../../contract/runtime-contract.js";
import { HELLO, compile, goRuntime } from "./fixtures.js";

const NAME = `.fizz-archive-${"ab".repeat(16)}`;

function fileSpecialize(rt: Runtime, digest: string, archiveFile: string, trailing = "") {
  const line = JSON.stringify({
    function: { namespace: "default", name: "hello", revision: 3 },
    digest,
    archiveFile,
  });
  return request(rt.url, {
    method: "POST",
    path: "/v2/specialize",
    headers: { "content-type": ARCHIVE_CONTENT_TYPE },
    body: Buffer.from(`${line}\n${trailing}`),
  });
}

describe("go runtime: the archive as a file in its work dir (archiveFile)", function () {
  this.timeout(180_000);
  let rt: Runtime | undefined;
  let work: string;
  let outside: string;
  let archive: Buffer;

  before(async function () {
    this.timeout(900_000);
    archive = await packageArchive(await compile({ [HELLO.filename]: HELLO.source }));
  });
  beforeEach(async () => {
    work = mkdtempSync(join(tmpdir(), "fizz-go-afile-"));
    outside = mkdtempSync(join(tmpdir(), "fizz-go-afile-out-"));
    rt = await goRuntime.start({ FIZZ_WORKDIR: work });
  });
  afterEach(async () => {
    await rt?.kill();
    rt = undefined;
    rmSync(work, { recursive: true, force: true });
    rmSync(outside, { recursive: true, force: true });
  });

  it("loads the named file, with no body, and unlinks the name once opened", async () => {
    writeFileSync(join(work, NAME), archive, { mode: 0o444 });
    const res = await fileSpecialize(rt!, sha256(archive), NAME);
    expect(res.status, res.text).to.equal(200);
    expect(existsSync(join(work, NAME))).to.equal(false);
    expect((await request(rt!.url, { headers: ME })).text).to.equal("Hello, world!\n");
    // The function's process (the same pid, after the exec) holds no descriptor on the archive.
    const pid = rt!.proc.pid!;
    const held = readdirSync(`/proc/${pid}/fd`).map((fd) => {
      try {
        return readlinkSync(`/proc/${pid}/fd/${fd}`);
      } catch {
        return "";
      }
    });
    expect(held.filter((l) => l.includes(".fizz-archive-"))).to.deep.equal([]);
  });

  it("refuses a symbolic link planted under the name, even to a valid archive, and stays warm", async () => {
    writeFileSync(join(outside, "pkg"), archive);
    symlinkSync(join(outside, "pkg"), join(work, NAME));
    const res = await fileSpecialize(rt!, sha256(archive), NAME);
    expect(res.status, res.text).to.equal(400);
    expect(res.object()).to.nested.include({ "error.field": "archiveFile" });
    // Still warm: the streamed form loads.
    expect((await specializeArchive(rt!, archive)).status).to.equal(200);
  });

  it("refuses a FIFO under the name without blocking", async () => {
    expect(spawnSync("mkfifo", [join(work, NAME)]).status).to.equal(0);
    const res = await fileSpecialize(rt!, sha256(archive), NAME);
    expect(res.status, res.text).to.equal(400);
  });

  for (const bad of ["../pkg", "pkg", `/tmp/${NAME}`, `${NAME}/x`, 7]) {
    it(`refuses an archiveFile that is not a bare name it was given (${String(bad)})`, async () => {
      writeFileSync(join(outside, "pkg"), archive);
      const res = await fileSpecialize(rt!, sha256(archive), bad as string);
      expect(res.status, res.text).to.equal(400);
      expect(res.object()).to.nested.include({ "error.field": "archiveFile" });
    });
  }

  it("refuses a file that does not hash to the digest, and stays warm", async () => {
    const tampered = Buffer.from(archive);
    const at = tampered.length - 20;
    tampered[at] = tampered[at]! ^ 0xff;
    writeFileSync(join(work, NAME), tampered);
    const res = await fileSpecialize(rt!, sha256(archive), NAME);
    expect(res.status, res.text).to.equal(400);
    expect(res.object()).to.nested.include({ "error.code": "DIGEST_MISMATCH" });
    expect((await specializeArchive(rt!, archive)).status).to.equal(200);
  });

  it("refuses bytes after the line when the archive is a file", async () => {
    writeFileSync(join(work, NAME), archive);
    const res = await fileSpecialize(rt!, sha256(archive), NAME, "x");
    expect(res.status, res.text).to.equal(400);
    expect(res.object()).to.nested.include({ "error.field": "body" });
  });

  it("refuses a name that is not there, and stays warm", async () => {
    const res = await fileSpecialize(rt!, sha256(archive), NAME);
    expect(res.status, res.text).to.equal(400);
    expect((await specializeArchive(rt!, archive)).status).to.equal(200);
  });
});
