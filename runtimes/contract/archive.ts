// Test archives for the archive form of specialize, built with node-tar: packages from a map of
// files (as a developer's `tar czf` would make them), and hand-made entries an attacker would
// write (`../x`, links), which no file system can produce.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { gzipSync } from "node:zlib";
import { Header, create } from "tar";

/** A package's files, path -> content. */
export type Files = Record<string, string | Buffer>;

/** A gzip'd tar of `files`, made by node-tar from a directory; names start with "./". */
export async function packageArchive(files: Files): Promise<Buffer> {
  const dir = mkdtempSync(join(tmpdir(), "fizz-package-"));
  try {
    for (const [path, content] of Object.entries(files)) {
      mkdirSync(dirname(join(dir, path)), { recursive: true });
      writeFileSync(join(dir, path), content);
    }
    const chunks: Buffer[] = [];
    const stream = create({ gzip: true, portable: true, cwd: dir }, ["."]);
    for await (const chunk of stream) chunks.push(chunk);
    return Buffer.concat(chunks);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export interface RawEntry {
  path: string;
  type?: "File" | "Directory" | "SymbolicLink" | "Link" | "FIFO" | "CharacterDevice";
  body?: string;
  linkpath?: string;
}

/** A gzip'd tar of exactly these entries, headers written by node-tar's Header. */
export function rawArchive(entries: RawEntry[]): Buffer {
  const blocks: Buffer[] = [];
  for (const { path, type = "File", body = "", linkpath } of entries) {
    const data = Buffer.from(body);
    const header = new Header({
      path,
      type,
      size: type === "File" ? data.length : 0,
      mode: type === "Directory" ? 0o755 : 0o644,
      mtime: new Date(0),
      uid: 0,
      gid: 0,
      ...(linkpath === undefined ? {} : { linkpath }),
    });
    const block = Buffer.alloc(512);
    header.encode(block, 0);
    blocks.push(block);
    if (type === "File" && data.length > 0) {
      blocks.push(data, Buffer.alloc((512 - (data.length % 512)) % 512));
    }
  }
  blocks.push(Buffer.alloc(1024)); // end of archive
  return gzipSync(Buffer.concat(blocks));
}
