import http from "node:http";
import { randomBytes } from "node:crypto";
import { mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { expect } from "chai";
import { jetstreamManager } from "@nats-io/jetstream";
import { ARCHIVE_BUCKET } from "@fizz/events";
import { connectNats, silentLogger, type NatsConnection } from "@fizz/kit";
import { tar, tarGz, zip } from "../../../shared/kit/test/archive-builders";
import {
  ADMIN_TOKEN,
  READ_TOKEN,
  registryEnv,
  startRegistry,
  startStack,
  uploadArchive,
  type Running,
  type Stack,
} from "./helpers";

const LIMIT = 64 * 1024;
const files = [
  { name: "app/", type: "5", mode: 0o755 },
  { name: "app/main.py", data: "def main():\n    return 'pkg'\n" },
  { name: "app/requirements.txt", data: "" },
];

describe("registry archive uploads", () => {
  let stack: Stack;
  let reg: Running;
  let workDir: string;
  let nc: NatsConnection;

  before(async () => {
    stack = await startStack();
    workDir = await mkdtemp(join(tmpdir(), "fizz-reg-work-"));
    reg = await startRegistry(
      registryEnv(stack, {
        FIZZ_REGISTRY_WORKDIR: workDir,
        FIZZ_ARCHIVE_MAX_BYTES: String(LIMIT),
      }),
    );
    nc = await connectNats({ url: stack.nats.url, name: "test", logger: silentLogger() });
  });
  after(async () => {
    await nc?.close();
    await reg?.svc.stop();
    await stack?.cleanup();
    await rm(workDir, { recursive: true, force: true });
  });

  /** Messages in the bucket's stream: unchanged means nothing was stored. */
  const stored = async () =>
    (await (await jetstreamManager(nc)).streams.info(`OBJ_${ARCHIVE_BUCKET}`)).state.messages;
  const leftovers = () => readdir(workDir);

  it("canonicalizes tar.gz, tar and zip of the same files to one digest, and serves it back", async () => {
    const gz = await uploadArchive(reg.api, tarGz(files), { use: "source" });
    expect(gz.status, JSON.stringify(gz.body)).to.equal(201);
    const archive = (
      gz.body as unknown as { archive: { digest: string; size: number; files: number } }
    ).archive;
    expect(archive.digest).to.match(/^sha256:[0-9a-f]{64}$/);
    expect(archive.files).to.equal(2);
    const plain = await uploadArchive(reg.api, tar(files), { contentType: "application/x-tar" });
    const zipped = await uploadArchive(
      reg.api,
      zip([
        { name: "app/main.py", data: "def main():\n    return 'pkg'\n", deflate: true },
        { name: "app/requirements.txt", data: "" },
      ]),
      { contentType: "application/zip", use: "deployment" },
    );
    // The format is sniffed: the content type only has to be one of the archive types.
    const sniffed = await uploadArchive(reg.api, tarGz(files), {
      contentType: "application/octet-stream",
    });
    for (const r of [plain, zipped, sniffed]) {
      expect(r.status, JSON.stringify(r.body)).to.equal(201);
      expect(r.body).to.deep.equal(gz.body);
    }
    expect(await leftovers()).to.deep.equal([]);

    // A package naming it serves the canonical bytes back.
    await reg.api.ns().create("environments", { name: "py", spec: { image: "fizz/env-python" } });
    const pkg = await reg.api
      .ns()
      .create("packages", { name: "lib", spec: { environment: "py", deployment: archive } });
    expect(pkg.status, JSON.stringify(pkg.body)).to.equal(201);
    for (const which of ["source", "deployment"]) {
      const res = await reg.api.call("GET", `/v1/namespaces/default/packages/lib/${which}`);
      if (which === "source") {
        expect(res.status).to.equal(404);
        continue;
      }
      expect(res.status).to.equal(200);
      expect(res.headers.get("content-type")).to.equal("application/gzip");
      expect(res.headers.get("x-fizz-archive-digest")).to.equal(archive.digest);
      expect(res.bytes.length).to.equal(archive.size);
      expect(res.bytes[0]).to.equal(0x1f);
    }
    // Like code, archives need the admin token.
    const read = await reg.api
      .as(READ_TOKEN)
      .call("GET", "/v1/namespaces/default/packages/lib/deployment");
    expect(read.status).to.equal(403);
  });

  it("refuses an archive with a traversal entry with ARCHIVE_UNSAFE naming it, storing nothing", async () => {
    const before = await stored();
    for (const [body, type] of [
      [
        tarGz([
          { name: "ok.py", data: "x" },
          { name: "../../etc/evil", data: "x" },
        ]),
        "application/gzip",
      ],
      [zip([{ name: "../escape.py", data: "x" }]), "application/zip"],
    ] as const) {
      const res = await uploadArchive(reg.api, body, { contentType: type });
      expect(res.status, JSON.stringify(res.body)).to.equal(400);
      expect(res.body.error.code).to.equal("ARCHIVE_UNSAFE");
      expect(res.body.error.message).to.include("escape");
    }
    const notArchive = await uploadArchive(reg.api, Buffer.from("just some text, not an archive"));
    expect(notArchive.status).to.equal(400);
    expect(notArchive.body.error.code).to.equal("ARCHIVE_UNSAFE");
    expect(await stored()).to.equal(before);
    expect(await leftovers()).to.deep.equal([]);
  });

  it("refuses an upload over FIZZ_ARCHIVE_MAX_BYTES with 413, declared or streamed, storing nothing", async () => {
    const before = await stored();
    const big = randomBytes(LIMIT + 1);
    const declared = await uploadArchive(reg.api, big);
    expect(declared.status).to.equal(413);
    expect(declared.body.error.code).to.equal("PAYLOAD_TOO_LARGE");
    // Chunked: no length up front, so the count while streaming stops it.
    const streamed = await postChunked(reg.svc.port, [randomBytes(LIMIT / 2), randomBytes(LIMIT)]);
    expect(streamed.status).to.equal(413);
    expect(streamed.body).to.include("PAYLOAD_TOO_LARGE");
    expect(await stored()).to.equal(before);
    expect(await leftovers()).to.deep.equal([]);
  });

  it("refuses the content types a cross-site form can send, and the read-only token", async () => {
    const body = tarGz(files);
    for (const type of [
      "text/plain",
      "multipart/form-data; boundary=x",
      "application/x-www-form-urlencoded",
    ]) {
      const res = await uploadArchive(reg.api, body, { contentType: type });
      expect(res.status, type).to.equal(415);
      expect(res.body.error.code).to.equal("UNSUPPORTED_MEDIA_TYPE");
    }
    const readOnly = await uploadArchive(reg.api.as(READ_TOKEN), body);
    expect(readOnly.status).to.equal(403);
    const anonymous = await uploadArchive(reg.api.as(null), body);
    expect(anonymous.status).to.equal(401);
    const foreign = await reg.api.call("POST", "/v1/namespaces/default/archives", undefined, {
      raw: body,
      contentType: "application/gzip",
      headers: { origin: "https://evil.example" },
    });
    expect(foreign.status).to.equal(403);
    const badUse = await uploadArchive(reg.api, body, { use: "other" });
    expect(badUse.status).to.equal(400);
    expect(badUse.body.error.field).to.equal("use");
  });
});

/** A chunked POST (no Content-Length), reading the answer even if the server stops reading. */
function postChunked(port: number, chunks: Buffer[]): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        port,
        host: "127.0.0.1",
        method: "POST",
        path: "/v1/namespaces/default/archives",
        headers: { authorization: `Bearer ${ADMIN_TOKEN}`, "content-type": "application/gzip" },
      },
      (res) => {
        let body = "";
        res.on("data", (d: Buffer) => (body += d.toString()));
        res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
        res.on("error", reject);
      },
    );
    req.on("error", reject);
    for (const c of chunks) req.write(c);
    req.end();
  });
}
