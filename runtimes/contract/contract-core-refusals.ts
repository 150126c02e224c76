// The core contract's refusals that guard the platform: a package sent to an environment that
// loads single files only, and a refused request's unread body that must not be taken for the
// next request on the connection (split out of contract-core.ts).
import net from "node:net";
import { expect } from "chai";
import { packageArchive } from "./archive.js";
import type { CoreRuntimeUnderTest } from "./contract-core.js";
import { ME, healthState, push } from "./contract-lifecycle.js";
import { type Runtime, request, specializeArchive } from "./harness.js";
import type { Source } from "./runtime-under-test.js";

type Start = CoreRuntimeUnderTest["start"];

export function describeFraming(start: Start, echo: Source): void {
  describe("framing after a refusal", () => {
    let rt: Runtime;
    before(async () => {
      rt = await start({ FIZZ_INSTANCE_ID: "inst-1", FIZZ_MAX_BODY_BYTES: "4096" });
      expect((await push(rt, echo)).status).to.equal(200);
    });
    after(() => rt.kill());

    // The refused request's body is a request of its own: a runtime that answers without
    // skipping the body would take it for the next request on the connection (smuggling).
    const smuggled = "GET /smuggled HTTP/1.1\r\nHost: x\r\nX-Fizz-Instance: inst-1\r\n\r\n";
    const refusals: Array<[string, Record<string, string>, string, number]> = [
      ["421 MISDIRECTED", { "X-Fizz-Instance": "inst-2" }, smuggled, 421],
      ["413 PAYLOAD_TOO_LARGE", ME, `${"x".repeat(4200)}${smuggled}`, 413],
    ];
    for (const [what, headers, body, status] of refusals) {
      it(`reads the next request on the connection as sent after a ${what} whose body it did not read`, async () => {
        const answers = await pipelined(rt, [
          { method: "POST", headers, body },
          { method: "POST", headers: { ...ME, Connection: "close" }, body: "legit" },
        ]);
        expect(answers[0], answers.join("\n---\n")).to.match(
          new RegExp(`^HTTP/1\\.[01] ${status} `),
        );
        // Closing the connection after the refusal is right too; answering the body is not.
        expect(answers.length, answers.join("\n---\n")).to.be.at.most(2);
        if (answers[1] !== undefined) {
          expect(answers[1]).to.match(/^HTTP\/1\.[01] 200 /);
          expect(answers[1]).to.include("legit");
        }
        expect(await healthState(rt)).to.equal("specialized");
      });
    }
  });
}

/** A package sent in the archive form: loaded by an environment that declares packages, else
 * refused as code it cannot load (500), never as a bad request (400), which the poolkeeper
 * takes for a broken instance and retries on another one. */
export function describeArchiveForm({
  start,
  fixtures,
  packages = false,
}: CoreRuntimeUnderTest): void {
  const { hello } = fixtures;
  describe("a package (the archive form of specialize)", () => {
    let rt: Runtime;
    before(async () => (rt = await start()));
    after(() => rt.kill());

    if (packages) {
      it("loads it and answers Hello, world!", async () => {
        const entrypoint = hello.entrypoint === undefined ? {} : { entrypoint: hello.entrypoint };
        const archive = await packageArchive({ [hello.filename]: hello.source });
        const res = await specializeArchive(rt, archive, entrypoint);
        expect(res.status, res.text).to.equal(200);
        expect((await request(rt.url, { headers: ME })).text).to.equal("Hello, world!\n");
      });
    } else {
      it("answers 500 FUNCTION_LOAD_FAILED, not 400, and reports failed", async () => {
        const archive = await packageArchive({ [hello.filename]: hello.source });
        const res = await specializeArchive(rt, archive);
        expect(res.status, res.text).to.equal(500);
        expect(res.error().code).to.equal("FUNCTION_LOAD_FAILED");
        expect(await healthState(rt)).to.equal("failed");
      });
    }
  });
}

/** Sends requests back to back on one connection; resolves with each answer's raw text, split at
 * status lines, once the runtime closes the connection. */
function pipelined(
  rt: Runtime,
  requests: Array<{ method: string; headers: Record<string, string>; body: string }>,
): Promise<string[]> {
  const { port } = new URL(rt.url);
  const wire = requests
    .map(({ method, headers, body }) => {
      const lines = Object.entries({ Host: "127.0.0.1", ...headers }).map(([k, v]) => `${k}: ${v}`);
      return `${method} / HTTP/1.1\r\n${lines.join("\r\n")}\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`;
    })
    .join("");
  return new Promise((resolve, reject) => {
    const socket = net.connect(Number(port), "127.0.0.1");
    let raw = "";
    const timer = setTimeout(() => socket.destroy(new Error(`no close within 5s:\n${raw}`)), 5_000);
    socket.on("data", (d: Buffer) => (raw += d.toString("latin1")));
    socket.on("error", (error) => {
      clearTimeout(timer);
      // A reset once the answers are in is a close that did not wait for our unread bytes.
      if (raw) resolve(split(raw));
      else reject(error);
    });
    socket.on("close", () => {
      clearTimeout(timer);
      resolve(split(raw));
    });
    socket.end(wire);
  });
}

const split = (raw: string) => raw.split(/(?=^HTTP\/1\.[01] \d{3} )/m).filter((a) => a !== "");
