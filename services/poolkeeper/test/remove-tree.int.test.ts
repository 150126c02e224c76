import { execFileSync } from "node:child_process";
import {
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { chmod, chown, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { expect } from "chai";
import { ASYNC_CALLS, type Calls } from "../src/remove-calls";
import { removeTreeNoFollow } from "../src/remove-tree";
import { asUid, isRoot, SETPRIV } from "./process-helpers";

/**
 * The real calls, with `act` run once right before the `op` (openDir: after the directory's lstat;
 * unlink: after the file's; rmdir: once the directory is emptied) of an entry named `name`: what
 * a process writing in the tree can do at that step, made deterministic. `acted`: how often it ran
 * (a test whose act never ran proves nothing).
 */
function before(
  op: "openDir" | "unlink" | "rmdir",
  name: string,
  act: () => void,
): { calls: Calls; acted: () => number } {
  let acted = 0;
  const when = (call: string, p: string) => {
    if (call === op && acted === 0 && path.basename(p) === name) {
      acted++;
      act();
    }
  };
  const calls: Calls = {
    ...ASYNC_CALLS,
    openDir: (p) => (when("openDir", p), ASYNC_CALLS.openDir(p)),
    unlink: (p) => (when("unlink", p), ASYNC_CALLS.unlink(p)),
    rmdir: (p) => (when("rmdir", p), ASYNC_CALLS.rmdir(p)),
  };
  return { calls, acted: () => acted };
}

describe("removeTreeNoFollow with entries vanishing mid-walk", () => {
  let dir: string;
  let tree: string;
  let outside: string;

  beforeEach(async () => {
    dir = await mkdtemp(path.join(tmpdir(), "fizz-remove-tree-"));
    tree = path.join(dir, "tree");
    outside = path.join(dir, "outside");
    // Siblings of "v" (the one to vanish) on both sides whatever order readdir gives, and deeper.
    for (const d of ["a", "v", "c", "a/b", "c/d"])
      mkdirSync(path.join(tree, d), { recursive: true });
    for (const f of ["f", "a/f", "v/f", "c/f", "a/b/f", "c/d/f"])
      await writeFile(path.join(tree, f), "x");
    mkdirSync(outside);
    await writeFile(path.join(outside, "precious"), "keep me");
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("goes on past a subdirectory removed between its lstat and its open, and removes the rest of the tree", async () => {
    // It took the open's ENOENT for the whole tree gone and stopped: the rest stayed behind.
    const { calls, acted } = before("openDir", "v", () =>
      rmSync(path.join(tree, "v"), { recursive: true }),
    );
    await removeTreeNoFollow(tree, calls);
    expect(acted(), "v removed before its open").to.equal(1);
    expect(existsSync(tree), "the tree left behind").to.equal(false);
  });

  it("goes on past a subdirectory whose listing reports ENOENT (removed once open), and removes the rest", async () => {
    // getdents(2) answers ENOENT for a directory removed while open (glibc reads it as the end).
    const fds = new Set<number>();
    let listed = 0;
    const calls: Calls = {
      ...ASYNC_CALLS,
      openDir: async (p) => {
        const fd = await ASYNC_CALLS.openDir(p);
        if (path.basename(p) === "d") fds.add(fd);
        return fd;
      },
      list: async (fd) => {
        const listing = await ASYNC_CALLS.list(fd);
        if (!fds.delete(fd)) return listing;
        return {
          read: () => {
            listed++;
            rmSync(path.join(tree, "c", "d"), { recursive: true });
            throw Object.assign(new Error("ENOENT: no such file or directory, scandir"), {
              code: "ENOENT",
            });
          },
          close: () => listing.close(),
        };
      },
    };
    await removeTreeNoFollow(tree, calls);
    expect(listed, "d's listing answered ENOENT").to.equal(1);
    expect(existsSync(tree), "the tree left behind").to.equal(false);
  });

  it("attack: a subdirectory renamed out of the tree at that step is not followed there; the rest is removed", async () => {
    const moved = path.join(outside, "moved");
    const { calls } = before("openDir", "v", () => renameSync(path.join(tree, "v"), moved));
    await removeTreeNoFollow(tree, calls);
    expect(existsSync(tree), "the tree left behind").to.equal(false);
    expect(readFileSync(path.join(moved, "f"), "utf8")).to.equal("x");
    expect(readFileSync(path.join(outside, "precious"), "utf8")).to.equal("keep me");
  });

  // A swap between an entry's lstat and its open or unlink was thrown: the instance's (or build's)
  // directory stayed and its uid stayed reserved for good, so a second uid let into the tree (a
  // 0777 directory), still running when the first one's instance ended, drained the pool.
  for (const [what, swap] of [
    ["a link to outside", (v: string) => symlinkSync(outside, v)],
    ["a file", (v: string) => writeFileSync(v, "x")],
  ] as const)
    it(`attack: a subdirectory swapped for ${what} right before its open: that is removed, not followed, and the rest of the tree`, async () => {
      const v = path.join(tree, "v");
      const { calls, acted } = before("openDir", "v", () => {
        rmSync(v, { recursive: true });
        swap(v);
      });
      await removeTreeNoFollow(tree, calls);
      expect(acted(), "v swapped").to.equal(1);
      expect(existsSync(tree), "the tree left behind").to.equal(false);
      expect(readdirSync(outside)).to.deep.equal(["precious"]);
      expect(readFileSync(path.join(outside, "precious"), "utf8")).to.equal("keep me");
    });

  it("attack: a file swapped for a directory right before its unlink: that directory is emptied and removed with the rest", async () => {
    const g = path.join(tree, "g");
    await writeFile(g, "x");
    const { calls, acted } = before("unlink", "g", () => {
      rmSync(g);
      mkdirSync(g);
      symlinkSync(outside, path.join(g, "out"));
    });
    await removeTreeNoFollow(tree, calls);
    expect(acted(), "g swapped").to.equal(1);
    expect(existsSync(tree), "the tree left behind").to.equal(false);
    expect(readFileSync(path.join(outside, "precious"), "utf8")).to.equal("keep me");
  });

  it("attack: a subdirectory swapped for a link once emptied, right before its rmdir: the link is removed, and the rest of the tree", async () => {
    const v = path.join(tree, "v");
    const { calls, acted } = before("rmdir", "v", () => {
      rmSync(v, { recursive: true });
      symlinkSync(outside, v);
    });
    await removeTreeNoFollow(tree, calls);
    expect(acted(), "v swapped").to.equal(1);
    expect(existsSync(tree), "the tree left behind").to.equal(false);
    expect(readdirSync(outside)).to.deep.equal(["precious"]);
  });

  it("attack: an entry swapped again at every look still ends: refused after a bounded number of looks, nothing outside removed", async () => {
    const v = path.join(tree, "v");
    let swaps = 0;
    const calls: Calls = {
      ...ASYNC_CALLS,
      openDir: (p) => {
        if (path.basename(p) === "v") {
          swaps++;
          rmSync(v, { recursive: true });
          symlinkSync(outside, v);
        }
        return ASYNC_CALLS.openDir(p);
      },
      unlink: (p) => {
        if (path.basename(p) === "v") {
          swaps++;
          rmSync(v);
          mkdirSync(v);
        }
        return ASYNC_CALLS.unlink(p);
      },
    };
    const err = await removeTreeNoFollow(tree, calls).then(
      () => undefined,
      (e: unknown) => e as NodeJS.ErrnoException,
    );
    // O_NOFOLLOW | O_DIRECTORY on a link: ENOTDIR (ELOOP without O_DIRECTORY); unlink: EISDIR.
    expect(["ELOOP", "ENOTDIR", "EISDIR"]).to.include(err?.code);
    expect(swaps, "looked again, a bounded number of times").to.be.within(2, 64);
    expect(readFileSync(path.join(outside, "precious"), "utf8")).to.equal("keep me");
  });

  it("as the instances' own user, goes on past a read-only subdirectory removed right before its chmod", async function () {
    // Not root: a 0500 directory of its own is made 0700 first; that chmod's ENOENT stopped it.
    if (!isRoot || !existsSync(SETPRIV)) this.skip(); // stands in for that user with setpriv
    const uid = 259_000 + Math.floor(Math.random() * 900);
    for (const p of ["", "a", "v", "c", "a/b", "c/d", "f", "a/f", "v/f", "c/f", "a/b/f", "c/d/f"])
      await chown(path.join(tree, p), uid, uid);
    rmSync(path.join(tree, "v", "f")); // emptied: the user can rmdir it though it is 0500
    await chmod(path.join(tree, "v"), 0o500);
    await chown(dir, uid, uid); // the tree's parent: its own, as an instance's work directory is
    const src = fileURLToPath(new URL("../src/remove-tree.ts", import.meta.url));
    const callsSrc = fileURLToPath(new URL("../src/remove-calls.ts", import.meta.url));
    const v = path.join(tree, "v");
    const script = `
      const { rmdirSync } = await import("node:fs");
      const m = await import(${JSON.stringify(src)});
      const k = await import(${JSON.stringify(callsSrc)});
      let done = false;
      const calls = { ...k.ASYNC_CALLS, chmod: (p, mode) => {
        if (!done && p.endsWith("/v")) { done = true; rmdirSync(${JSON.stringify(v)}); }
        return k.ASYNC_CALLS.chmod(p, mode);
      } };
      await m.removeTreeNoFollow(${JSON.stringify(tree)}, calls);
      if (!done) throw new Error("no chmod of v");`;
    execFileSync(
      SETPRIV,
      asUid(uid, [process.execPath, "--import", "tsx", "--input-type=module", "-e", script]),
      { stdio: "pipe", env: { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: dir } },
    );
    expect(existsSync(tree), "the tree left behind").to.equal(false);
  });

  it("reads a large directory a bounded batch at a time while removing it, not whole (memory a tenant's millions of names would take)", async () => {
    // A whole listing of 200,000 names of 200 characters took +45 MB of heap per directory.
    const big = path.join(tree, "big");
    mkdirSync(big);
    for (let i = 0; i < 2000; i++) await writeFile(path.join(big, `n${i}`), "");
    const batches: number[] = [];
    const leftAtRead: number[] = [];
    const calls: Calls = {
      ...ASYNC_CALLS,
      list: async (fd) => {
        const listing = await ASYNC_CALLS.list(fd);
        const mine = readdirSync(`/proc/self/fd/${fd}`).length >= 2000;
        return {
          read: async () => {
            if (mine) leftAtRead.push(readdirSync(big).length);
            const names = await listing.read();
            if (mine) batches.push(names.length);
            return names;
          },
          close: () => listing.close(),
        };
      },
    };
    await removeTreeNoFollow(tree, calls);
    expect(existsSync(tree), "the tree left behind").to.equal(false);
    expect(Math.max(...batches), "names held at once").to.be.at.most(128);
    expect(
      batches.reduce((a, b) => a + b, 0),
      "each name listed once",
    ).to.equal(2000);
    expect(leftAtRead[1], "removed while being read").to.be.below(2000);
  });
});
