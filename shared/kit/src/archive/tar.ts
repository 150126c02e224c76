import { basename } from "node:path";
import { setMaxListeners } from "node:events";
import { createReadStream } from "node:fs";
import { Parser, type ReadEntry } from "tar";
import { ArchiveError } from "./errors.js";
import type { ExtractSink } from "./sink.js";

const FILE_TYPES = new Set(["File", "OldFile", "ContiguousFile"]);
const DEVICE_TYPES = new Set(["CharacterDevice", "BlockDevice", "FIFO"]);
/** Files up to this size are gathered in memory and written in one synchronous call. */
const SMALL_FILE_BYTES = 256 * 1024;

/**
 * Streams a .tar or .tar.gz (the parser recognises gzip) from the file through the sink. Entries
 * arrive one at a time: the parser waits for a file's data to be read before the next header.
 */
export function extractTar(path: string, sink: ExtractSink): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const input = createReadStream(path);
    const pending: Promise<void>[] = [];
    const abort = new AbortController();
    // One listener per large file still being written: the parser moves on once a file's data is
    // read, so many writes can be settling at once. Not a leak; each goes when its write ends.
    setMaxListeners(0, abort.signal);
    let failed = false;
    const fail = (err: unknown): void => {
      if (failed) return;
      failed = true;
      input.unpipe();
      input.destroy();
      abort.abort();
      // Settle every open write before the caller removes the directory.
      void Promise.allSettled(pending).then(() => {
        const chosen = sink.refusal ?? err;
        reject(chosen instanceof Error ? chosen : new Error(String(chosen)));
      });
    };
    const parser = new Parser({
      strict: true,
      // The sink counts the ratio itself, over the whole archive, and names the entry.
      maxDecompressionRatio: Number.MAX_SAFE_INTEGER,
      onwarn: (_code, message) =>
        fail(new ArchiveError(basename(path), "malformed archive", message)),
    });
    parser.on("entry", (entry: ReadEntry) => {
      if (failed) {
        entry.resume();
        return;
      }
      try {
        const name = entry.path;
        if (FILE_TYPES.has(entry.type) && entry.size <= SMALL_FILE_BYTES) {
          const chunks: Buffer[] = [];
          let size = 0;
          entry.on("data", (chunk: Buffer) => {
            size += chunk.length;
            // The header's size bounds the data; more than it claims is a malformed archive.
            if (size <= SMALL_FILE_BYTES) chunks.push(chunk);
          });
          entry.on("end", () => {
            if (failed) return;
            try {
              if (size > SMALL_FILE_BYTES)
                throw new ArchiveError(name, "malformed archive", "more data than its header");
              sink.fileBytes(name, entry.mode, Buffer.concat(chunks, size));
            } catch (err) {
              fail(err);
            }
          });
          return;
        }
        if (FILE_TYPES.has(entry.type)) {
          pending.push(
            sink
              .file(name, entry.mode, entry as AsyncIterable<Buffer>, abort.signal)
              .catch((err: unknown) => fail(err)),
          );
          return;
        }
        entry.resume();
        if (entry.type === "Directory") sink.directory(name);
        else if (entry.type === "SymbolicLink") sink.symlink(name, entry.linkpath ?? "");
        else if (entry.type === "Link") sink.hardlink(name, entry.linkpath ?? "");
        else if (DEVICE_TYPES.has(entry.type))
          throw new ArchiveError(name, "device file, FIFO or socket");
        else throw new ArchiveError(name, "unsupported entry type");
      } catch (err) {
        fail(err);
      }
    });
    parser.on("error", (err: unknown) =>
      fail(new ArchiveError(basename(path), "malformed archive", err)),
    );
    parser.on("end", () => {
      void Promise.all(pending).then(() => {
        if (!failed) resolve();
      });
    });
    input.on("error", fail);
    input.pipe(parser);
  });
}
