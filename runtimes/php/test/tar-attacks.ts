// Hand-made tar headers for archive attacks node-tar's Header will not write as such: pax
// extended headers (`x`) and GNU long names (`L`) carrying the real name of the next entry, and
// raw type flags. Each header is a 512-byte ustar block with a correct checksum.
import { gzipSync } from "node:zlib";

export interface TarPiece {
  name: string;
  type: string;
  body?: string | Buffer;
}

function header(name: string, type: string, size: number): Buffer {
  const block = Buffer.alloc(512);
  block.write(name.slice(0, 100), 0, "latin1");
  block.write("0000644\0", 100);
  block.write("0000000\0", 108);
  block.write("0000000\0", 116);
  block.write(size.toString(8).padStart(11, "0") + "\0", 124);
  block.write("00000000000\0", 136);
  block.write("        ", 148);
  block.write(type, 156);
  block.write("ustar\0", 257);
  block.write("00", 263);
  let sum = 0;
  for (const byte of block) sum += byte;
  block.write(sum.toString(8).padStart(6, "0") + "\0 ", 148);
  return block;
}

function padded(data: Buffer): Buffer[] {
  return [data, Buffer.alloc((512 - (data.length % 512)) % 512)];
}

/** A pax record: "<length> <key>=<value>\n", the length counting itself. */
export function paxRecord(key: string, value: string): string {
  const rest = ` ${key}=${value}\n`;
  let length = rest.length + 1;
  while (String(length).length + rest.length !== length)
    length = String(length).length + rest.length;
  return `${length}${rest}`;
}

/** A gzip'd tar of exactly these pieces, in order, then the end-of-archive blocks. */
export function tarOf(pieces: TarPiece[]): Buffer {
  const blocks: Buffer[] = [];
  for (const { name, type, body = "" } of pieces) {
    const data = Buffer.isBuffer(body) ? body : Buffer.from(body);
    blocks.push(header(name, type, data.length), ...padded(data));
  }
  blocks.push(Buffer.alloc(1024));
  return gzipSync(Buffer.concat(blocks));
}

/** A file whose real name is carried by a pax header. */
export const paxNamed = (name: string, body: string): TarPiece[] => [
  { name: "PaxHeader/x", type: "x", body: paxRecord("path", name) },
  { name: "placeholder", type: "0", body },
];

/** A file whose real name is carried by a GNU long-name entry. */
export const gnuNamed = (name: string, body: string): TarPiece[] => [
  { name: "././@LongLink", type: "L", body: `${name}\0` },
  { name: name.slice(0, 99), type: "0", body },
];
