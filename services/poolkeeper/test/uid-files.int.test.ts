import { expect } from "chai";
import { execFileSync } from "node:child_process";
import {
  chmodSync,
  chownSync,
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { UidPool } from "../src/isolation";
import { killUid } from "../src/uid-cleanup";
import { removeUidFiles } from "../src/uid-files";
import { ipcObjectsOf } from "../src/uid-ipc";

const SETPRIV = "/usr/bin/setpriv";
const isRoot = process.getuid?.() === 0;

/** Runs `sh -c script` as `uid`, as an instance would (setpriv, no groups). */
function asUid(uid: number, script: string): string {
  return execFileSync(
    SETPRIV,
    [`--reuid=${uid}`, `--regid=${uid}`, "--clear-groups", "--", "sh", "-c", script],
    { env: { PATH: "/usr/bin:/bin" }, encoding: "utf8" },
  );
}

describe("removing what an instance uid left outside its directory", function () {
  let root: string;
  let sticky: string;
  let base: number;

  beforeEach(function () {
    if (!isRoot || !existsSync(SETPRIV)) this.skip(); // runs things as other uids
    base = 257_000 + Math.floor(Math.random() * 900);
    root = mkdtempSync(path.join(tmpdir(), "fizz-uid-files-"));
    chmodSync(root, 0o755);
    // Stands in for /tmp: world-writable and sticky, root's.
    sticky = path.join(root, "tmp");
    mkdirSync(sticky);
    chmodSync(sticky, 0o1777);
  });

  afterEach(function () {
    if (!root) return;
    try {
      execFileSync("umount", [path.join(sticky, "busy")], { stdio: "ignore" });
    } catch {
      // not mounted
    }
    rmSync(root, { recursive: true, force: true });
    for (const uid of [base, base + 1]) {
      const ids = ipcObjectsOf(uid);
      if (ids.length) execFileSync("ipcrm", ids);
    }
  });

  it("removes the uid's files, trees and SysV segments, not links' targets nor others' files", async function () {
    const outside = path.join(root, "outside");
    writeFileSync(outside, "precious");
    chmodSync(outside, 0o644);
    asUid(
      base,
      [
        `echo secret > ${sticky}/cache`,
        `mkdir -p ${sticky}/tree/a/b && echo s > ${sticky}/tree/a/b/f && echo t > ${sticky}/tree/x`,
        `ln -s ${outside} ${sticky}/link`,
        `ln -s ${outside} ${sticky}/tree/link`,
        "ipcmk -M 4096 >/dev/null",
      ].join(" && "),
    );
    // Another uid's sticky directory, with a file of each uid in it: only the uid's goes.
    asUid(base + 1, `mkdir -m 1777 ${sticky}/shared && echo other > ${sticky}/other`);
    asUid(base, `echo mine > ${sticky}/shared/mine`);
    asUid(base + 1, `echo theirs > ${sticky}/shared/theirs`);
    expect(ipcObjectsOf(base), "the segment exists").to.have.length(2);

    const kill = await killUid(base, SETPRIV, undefined, { dirs: [sticky] });

    expect(kill.left).to.equal(0);
    for (const gone of ["cache", "tree", "link", "shared/mine"])
      expect(existsSync(path.join(sticky, gone)), gone).to.equal(false);
    expect(lstatSync(path.join(sticky, "link"), { throwIfNoEntry: false })).to.equal(undefined);
    expect(readFileSync(outside, "utf8")).to.equal("precious");
    expect(readFileSync(path.join(sticky, "other"), "utf8")).to.equal("other\n");
    expect(readFileSync(path.join(sticky, "shared/theirs"), "utf8")).to.equal("theirs\n");
    expect(ipcObjectsOf(base), "the segment is gone").to.deep.equal([]);
  });

  it("quarantines the uid when something of it cannot be removed", async function () {
    // A mount point: the uid's directory (the mounted root's owner), but rmdir answers EBUSY.
    const busy = path.join(sticky, "busy");
    mkdirSync(busy);
    chownSync(busy, base, base);
    try {
      execFileSync(
        "mount",
        ["-t", "tmpfs", "-o", `size=1m,uid=${base},gid=${base}`, "none", busy],
        { stdio: "ignore" },
      );
    } catch {
      this.skip(); // no CAP_SYS_ADMIN here
    }
    const pool = new UidPool(base, 1, path.join(root, "locks"));
    expect(pool.take()).to.equal(base);

    const kill = await killUid(base, SETPRIV, undefined, { dirs: [sticky] });

    expect(kill.left).to.be.greaterThan(0);
    expect(kill.unremoved?.join()).to.match(/busy: EBUSY/);
    expect(pool.giveBack(base, kill)).to.equal(false);
    expect(pool.quarantined).to.deep.equal([base]);
    expect(() => pool.take()).to.throw(/in use/);
  });

  it("goes on past its bound of others' entries (paced) instead of failing the uid", async function () {
    // A live tenant that keeps more entries in /tmp than the bound must not make every other
    // uid's clean-up fail (each then quarantined for the poolkeeper's life: the pool drains),
    // nor may the scan stop early (a file behind the others would be the next holder's).
    asUid(
      base + 1,
      `mkdir -m 1777 ${sticky}/s; for i in $(seq 1 30); do : > ${sticky}/f$i; : > ${sticky}/s/g$i; done`,
    );
    asUid(base, `: > ${sticky}/zz && : > ${sticky}/s/zz`);
    const r = await removeUidFiles(base, { dirs: [sticky], entries: 4, ipc: false });
    expect(r.failed).to.deep.equal([]);
    expect(r.removed).to.equal(2);
    expect(existsSync(`${sticky}/zz`) || existsSync(`${sticky}/s/zz`)).to.equal(false);
    expect(
      execFileSync("ls", ["-A", `${sticky}/s`], { encoding: "utf8" }).split("\n"),
    ).to.have.length(31);
  });

  it("removes all the uid left however much that is: only others' entries spend the bound", async function () {
    // A tenant that filled /tmp: its own clean-up must still empty it, or every later clean-up
    // of any uid would look at its entries, overrun the bound and quarantine that uid.
    asUid(
      base,
      `mkdir ${sticky}/d; for i in $(seq 1 40); do : > ${sticky}/f$i; : > ${sticky}/d/g$i; done`,
    );
    asUid(base + 1, `: > ${sticky}/other`);
    const r = await removeUidFiles(base, { dirs: [sticky], entries: 4, ipc: false });
    expect(r.failed).to.deep.equal([]);
    expect(r.removed).to.equal(81);
    expect(execFileSync("ls", ["-A", sticky], { encoding: "utf8" }).trim()).to.equal("other");
  });

  it("removes a tree of the uid deeper than it keeps directories open, not quarantining it", async function () {
    // Failing there quarantined the uid for good: one instance, one mkdir loop, one uid fewer
    // in the pool; enough instances drained it.
    asUid(
      base,
      `mkdir ${sticky}/deep && cd ${sticky}/deep && i=0; while [ $i -lt 1100 ]; do mkdir d && cd d; i=$((i+1)); done; echo s > f`,
    );
    const r = await removeUidFiles(base, { dirs: [sticky], ipc: false });
    expect(r.failed).to.deep.equal([]);
    expect(existsSync(`${sticky}/deep`)).to.equal(false);
    expect(r.removed).to.equal(1102);
  });

  it("keeps few directories open while removing a deep tree (clean-ups run side by side)", function () {
    // One descriptor per level: at 1024 levels a few instances ending together with deep trees
    // took the poolkeeper to its descriptor limit (EMFILE), failing (quarantining) other uids'
    // clean-ups and any accept or spawn meanwhile. Run under a 256-descriptor limit here.
    asUid(
      base,
      `mkdir ${sticky}/deep && cd ${sticky}/deep && i=0; while [ $i -lt 400 ]; do mkdir d && cd d; i=$((i+1)); done; echo s > f`,
    );
    const src = path.resolve(__dirname, "../src/uid-files.ts");
    const script = `import(${JSON.stringify(src)}).then(async (m) => {
      const r = await m.removeUidFiles(${base}, { dirs: [${JSON.stringify(sticky)}], ipc: false });
      process.stdout.write(JSON.stringify(r.failed.map((f) => f.slice(-40))));
    })`;
    const out = execFileSync(
      "prlimit",
      ["--nofile=256:256", process.execPath, "--import", "tsx", "-e", script],
      { encoding: "utf8" },
    );
    expect(JSON.parse(out)).to.deep.equal([]);
    expect(existsSync(`${sticky}/deep`)).to.equal(false);
  });

  it("with the real places, removes nothing another uid owns", async function () {
    const probe = `/tmp/fizz-uid-files-probe-${base}`;
    try {
      asUid(base + 1, `echo probe > ${probe}`);
      asUid(base, `echo mine > /tmp/fizz-uid-files-mine-${base}`);
      const r = await removeUidFiles(base);
      expect(r.failed).to.deep.equal([]);
      expect(readFileSync(probe, "utf8")).to.equal("probe\n");
      expect(existsSync(`/tmp/fizz-uid-files-mine-${base}`)).to.equal(false);
    } finally {
      rmSync(probe, { force: true });
      rmSync(`/tmp/fizz-uid-files-mine-${base}`, { force: true });
    }
  });
});
