// Ruby functions for the Ruby-only tests (runtime-ruby.int.test.ts), and a hand-made tar entry
// writer for archives no packer would produce (pax and GNU long names, odd entry types).
import type { Source } from "../../contract/runtime-contract.js";

/** Fission's request API: context.request (a Rack::Request), context.logger. */
export const FISSION_REQUEST: Source = {
  filename: "request.rb",
  source: [
    "def handler(context)",
    "  r = context.request",
    "  case context.query['kind']",
    "  when 'rack'",
    "    { method: r.request_method, path: r.path_info, query_string: r.query_string,",
    "      body: r.body.read, extra: r.get_header('HTTP_X_EXTRA'), post: r.post?,",
    "      params: r.params, headers: r.headers }",
    "  when 'log'",
    "    context.logger.info('from context.logger')",
    "    r.logger.warn('from request.logger')",
    "    'logged'",
    "  when 'exit'",
    "    exit",
    "  when 'json' then context.json",
    "  end",
    "end",
    "",
  ].join("\n"),
};

/** Answers of every shape, by the `kind` query parameter. */
export const RESPONSES: Source = {
  filename: "responses.rb",
  source: [
    "def handler(context)",
    "  case context.query['kind']",
    "  when 'cookies'",
    "    [404, { 'Set-Cookie' => \"a=1\\nb=2\", 'Content-Type' => 'text/html' }, ['<p>not here</p>']]",
    "  when 'untyped' then [200, {}, ['<script>alert(1)</script>']]",
    "  when 'framing' then [200, { 'Content-Length' => '999', 'Transfer-Encoding' => 'chunked' }, ['short']]",
    "  when 'splitting' then [200, { 'X-Ok' => \"a\\r\\nX-Injected: yes\" }, ['x']]",
    "  when 'response'",
    "    res = Rack::Response.new",
    "    res.status = 201",
    "    res.set_header('X-From', 'rack-response')",
    "    res.write('made')",
    "    res",
    "  when 'string-body' then [200, {}, 'rack 1 style']",
    "  when 'string-status' then ['202', {}, ['status as a String']]",
    "  when 'stream'",
    "    body = Enumerator.new do |y|",
    '      y << "one\\n"',
    "      sleep 0.1",
    '      y << "two\\n"',
    "      sleep 0.1",
    '      y << "three\\n"',
    "    end",
    "    [200, { 'Content-Type' => 'text/plain' }, body]",
    "  when 'stream-fails'",
    "    [200, {}, Enumerator.new { |y| y << 'half'; raise 'broke mid-stream' }]",
    "  when 'nil' then nil",
    "  when 'binary' then \"\\xff\\x00\".b",
    "  end",
    "end",
    "",
  ].join("\n"),
};

function field(block: Buffer, offset: number, length: number, value: string): void {
  block.write(value.slice(0, length), offset, "latin1");
}

function octal(n: number, width: number): string {
  return `${n.toString(8).padStart(width - 1, "0")}\0`;
}

/**
 * One ustar entry: header and padded data. `type` is the typeflag ("0" file, "2" symlink, "x"
 * pax, "L" GNU long name...). With `paxKey`, `body` is that pax record's value (ended by "\n").
 */
export function tarEntry(name: string, body: string, type = "0", paxKey?: string): Buffer {
  let data = Buffer.from(body, "latin1");
  if (paxKey !== undefined) {
    const record = ` ${paxKey}=${body}`;
    let len = record.length + 1;
    while (`${len}${record}`.length !== len) len += 1;
    data = Buffer.from(`${len}${record}`, "latin1");
  }
  const block = Buffer.alloc(512);
  field(block, 0, 100, name || "PaxHeader");
  field(block, 100, 8, octal(0o644, 8));
  field(block, 108, 8, octal(0, 8));
  field(block, 116, 8, octal(0, 8));
  field(block, 124, 12, octal(type === "2" ? 0 : data.length, 12));
  field(block, 136, 12, octal(0, 12));
  field(block, 148, 8, "        ");
  field(block, 156, 1, type);
  if (type === "2") field(block, 157, 100, "main.rb");
  field(block, 257, 6, "ustar\0");
  field(block, 263, 2, "00");
  let sum = 0;
  for (const byte of block) sum += byte;
  field(block, 148, 8, `${sum.toString(8).padStart(6, "0")}\0 `);
  if (type === "2" || data.length === 0) return block;
  const pad = Buffer.alloc((512 - (data.length % 512)) % 512);
  return Buffer.concat([block, data, pad]);
}
