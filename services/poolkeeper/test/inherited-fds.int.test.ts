import { spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { expect } from "chai";

const MODULE = path.resolve(import.meta.dirname, "../src/inherited-fds.ts");

/**
 * Runs a Node process holding two descriptors open across exec (200 and 201, as a shell or a
 * supervisor leaves them: Node marks only those from 0 up to the first gap past 15 close-on-exec
 * itself), which spawns `ls /proc/self/fd` as the poolkeeper spawns an instance; answers what that
 * grandchild held, and what the first process closed.
 */
async function grandchildFds(close: boolean): Promise<{ held: number[]; closed: number[] }> {
  const dir = mkdtempSync(path.join(os.tmpdir(), "fizz-fds-"));
  try {
    const script = path.join(dir, "run.ts");
    writeFileSync(
      script,
      `import { execFileSync } from "node:child_process";
import { closeInheritedDescriptors } from ${JSON.stringify(MODULE)};
const closed = ${close ? "closeInheritedDescriptors()" : "[]"};
const held = execFileSync("/bin/ls", ["/proc/self/fd"], { encoding: "utf8" })
  .split("\\n").filter(Boolean).map(Number);
process.stdout.write(JSON.stringify({ held, closed }));
`,
    );
    const child = spawn(
      "/bin/bash",
      ["-c", 'exec "$0" --import tsx "$1" 200<"$1" 201<"$1"', process.execPath, script],
      { stdio: ["ignore", "pipe", "inherit"] },
    );
    let out = "";
    child.stdout.setEncoding("utf8").on("data", (d: string) => (out += d));
    const code = await new Promise<number | null>((resolve) => child.on("close", resolve));
    expect(code, out).to.equal(0);
    return JSON.parse(out) as { held: number[]; closed: number[] };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

describe("descriptors the poolkeeper inherited", () => {
  it("reach a process it spawns when left open (the leak this guards against)", async () => {
    const { held } = await grandchildFds(false);
    expect(held).to.include.members([200, 201]);
  });

  it("are closed at start, so no instance or build step it spawns holds its parent's pipes", async () => {
    const { held, closed } = await grandchildFds(true);
    expect(closed).to.include.members([200, 201]);
    expect(held).to.not.include(200);
    expect(held).to.not.include(201);
    // Only stdio and ls's own directory descriptor.
    expect(held.every((fd) => fd <= 3)).to.equal(true);
  });
});
