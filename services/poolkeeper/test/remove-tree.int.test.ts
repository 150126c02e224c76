import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, symlinkSync } from "node:fs";
import { chmod, chown, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { expect } from "chai";
import { ASYNC_CALLS, removeTreeNoFollow, type Calls } from "../src/remove-tree";
import { asUid, isRoot, SETPRIV } from "./process-helpers";

/**
 * The real calls, with `act` run once right before the first open of a directory named `name`
 * (after its lstat): what a process writing in the tree can do at that step, made deterministic.
 */
function beforeOpenOf(name: string, act: () => void): Calls {
  let done = false;
  return {
    ...ASYNC_CALLS,
    openDir: (p) => {
      if (!done && path.basename(p) === name) {
        done = true;
        act();
      }
      return ASYNC_CALLS.openDir(p);
    },
  };
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
    await removeTreeNoFollow(
      tree,
      beforeOpenOf("v", () => rmSync(path.join(tree, "v"), { recursive: true })),
    );
    expect(existsSync(tree), "the tree left behind").to.equal(false);
  });

  it("goes on past a subdirectory whose listing reports ENOENT (removed once open), and removes the rest", async () => {
    // getdents(2) answers ENOENT for a directory removed while open (glibc reads it as the end).
    const fds = new Set<number>();
    const calls: Calls = {
      ...ASYNC_CALLS,
      openDir: async (p) => {
        const fd = await ASYNC_CALLS.openDir(p);
        if (path.basename(p) === "d") fds.add(fd);
        return fd;
      },
      readdir: (fd) => {
        if (!fds.delete(fd)) return ASYNC_CALLS.readdir(fd);
        rmSync(path.join(tree, "c", "d"), { recursive: true });
        throw Object.assign(new Error("ENOENT: no such file or directory, scandir"), {
          code: "ENOENT",
        });
      },
    };
    await removeTreeNoFollow(tree, calls);
    expect(existsSync(tree), "the tree left behind").to.equal(false);
  });

  it("attack: a subdirectory renamed out of the tree at that step is not followed there; the rest is removed", async () => {
    const moved = path.join(outside, "moved");
    await removeTreeNoFollow(
      tree,
      beforeOpenOf("v", () => renameSync(path.join(tree, "v"), moved)),
    );
    expect(existsSync(tree), "the tree left behind").to.equal(false);
    expect(readFileSync(path.join(moved, "f"), "utf8")).to.equal("x");
    expect(readFileSync(path.join(outside, "precious"), "utf8")).to.equal("keep me");
  });

  it("attack: a subdirectory swapped for a link to outside at that step is refused, nothing outside removed", async () => {
    const err = await removeTreeNoFollow(
      tree,
      beforeOpenOf("v", () => {
        rmSync(path.join(tree, "v"), { recursive: true });
        symlinkSync(outside, path.join(tree, "v"));
      }),
    ).then(
      () => undefined,
      (e: unknown) => e as NodeJS.ErrnoException,
    );
    // O_NOFOLLOW | O_DIRECTORY on a link: ENOTDIR (ELOOP without O_DIRECTORY); a failure as before.
    expect(["ELOOP", "ENOTDIR"]).to.include(err?.code);
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
    const v = path.join(tree, "v");
    const script = `
      const { rmdirSync } = await import("node:fs");
      const m = await import(${JSON.stringify(src)});
      let done = false;
      const calls = { ...m.ASYNC_CALLS, chmod: (p, mode) => {
        if (!done && p.endsWith("/v")) { done = true; rmdirSync(${JSON.stringify(v)}); }
        return m.ASYNC_CALLS.chmod(p, mode);
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
});
