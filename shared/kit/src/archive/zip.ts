import { basename } from "node:path";
import type { Readable } from "node:stream";
import yauzl, { type Entry, type ZipFile } from "yauzl";
import { ArchiveError } from "./errors.js";
import type { ExtractSink } from "./sink.js";

const S_IFMT = 0o170000;
const S_IFDIR = 0o040000;
const S_IFREG = 0o100000;
const S_IFLNK = 0o120000;
const MADE_BY_UNIX = 3;
const MAX_LINK_TARGET = 4096;

function open(path: string): Promise<ZipFile> {
  return new Promise((resolve, reject) => {
    // Names stay raw (decodeStrings: false) so our own checks, not yauzl's, name the rule broken.
    yauzl.open(
      path,
      { lazyEntries: true, validateEntrySizes: true, decodeStrings: false, autoClose: true },
      (err, zip) => {
        if (err) reject(new ArchiveError(basename(path), "malformed archive", err));
        else resolve(zip);
      },
    );
  });
}

function openStream(zip: ZipFile, entry: Entry): Promise<Readable> {
  return new Promise((resolve, reject) => {
    zip.openReadStream(entry, (err, stream) => (err ? reject(err) : resolve(stream)));
  });
}

async function readSmall(name: string, stream: Readable): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of stream as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_LINK_TARGET)
      throw new ArchiveError(name, "symlink target escapes the archive root");
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString("utf8");
}

function entryName(entry: Entry): string {
  const raw = entry.fileName as unknown as Buffer;
  // General purpose bit 11: the name is UTF-8; else CP437, read here as Latin-1 (ASCII alike).
  return raw.toString((entry.generalPurposeBitFlag & 0x800) !== 0 ? "utf8" : "latin1");
}

/** Reads a zip from the file, one entry at a time, through the sink. */
export async function extractZip(path: string, sink: ExtractSink): Promise<void> {
  const zip = await open(path);
  try {
    await new Promise<void>((resolve, reject) => {
      zip.on("error", (err: unknown) =>
        reject(
          err instanceof ArchiveError
            ? err
            : new ArchiveError(basename(path), "malformed archive", err),
        ),
      );
      zip.on("end", () => resolve());
      zip.on("entry", (entry: Entry) => {
        handle(zip, entry, sink).then(
          () => zip.readEntry(),
          (err: unknown) => reject(err instanceof Error ? err : new Error(String(err))),
        );
      });
      zip.readEntry();
    });
  } catch (err) {
    throw sink.refusal ?? err;
  } finally {
    zip.close();
  }
}

async function handle(zip: ZipFile, entry: Entry, sink: ExtractSink): Promise<void> {
  const name = entryName(entry);
  const unix = entry.versionMadeBy >> 8 === MADE_BY_UNIX;
  const mode = unix ? entry.externalFileAttributes >>> 16 : 0;
  const type = mode & S_IFMT;
  if (name.endsWith("/") || type === S_IFDIR) {
    sink.directory(name);
    return;
  }
  if (unix && type !== 0 && type !== S_IFREG && type !== S_IFLNK) {
    throw new ArchiveError(name, "device file, FIFO or socket");
  }
  let stream: Readable;
  try {
    stream = await openStream(zip, entry);
  } catch (err) {
    throw new ArchiveError(name, "malformed archive", err);
  }
  if (type === S_IFLNK) {
    sink.symlink(name, await readSmall(name, stream));
    return;
  }
  try {
    await sink.file(name, type === S_IFREG ? mode & 0o7777 : undefined, stream);
  } catch (err) {
    if (err instanceof ArchiveError) throw err;
    throw new ArchiveError(name, "malformed archive", err);
  }
}
