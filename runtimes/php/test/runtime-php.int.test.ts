// Integration tests of the PHP runtime (runtimes/php/server.php, run with Debian's /usr/bin/php):
// the shared runtime contract (runtimes/contract) with PHP's fixtures, then what only PHP does:
// Fission's two forms (a script with $logger; handler($context) with PSR-7 and PSR-3), exit()
// and fatal errors in a call, calls isolated from each other, the token out of every view of the
// environment, and archives built to attack the tar reader. A real process, real HTTP.
import { expect } from "chai";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { packageArchive } from "../../contract/archive.js";
import {
  type Runtime,
  eventually,
  postJson,
  request,
  sha256,
  sleep,
  specializeArchive,
  specializeBody,
} from "../../contract/harness.js";
import { ME, describeRuntimeContract, push } from "../../contract/runtime-contract.js";
import {
  FISSION_HELLO,
  FISSION_HELLOPSR,
  FISSION_STOCK,
  PRINTER,
  PSR2_PACKAGE,
  PROBES,
  TYPED_PSR,
} from "./fission-fixtures.js";
import { phpRuntime } from "./fixtures.js";
import { gnuNamed, paxNamed, paxRecord, tarOf } from "./tar-attacks.js";

describeRuntimeContract(phpRuntime);

describe("php runtime: PHP only", function () {
  this.timeout(20_000);

  /** A runtime specialized with `src`, for one describe block. */
  function specialized(src: Parameters<typeof push>[1], env: Record<string, string> = {}) {
    const ctx: { rt?: Runtime } = {};
    before(async () => {
      ctx.rt = await phpRuntime.start({ FIZZ_INSTANCE_ID: "inst-1", ...env });
      const res = await push(ctx.rt, src);
      expect(res.status, res.text).to.equal(200);
    });
    after(() => ctx.rt?.kill());
    return () => {
      if (!ctx.rt) throw new Error("no runtime");
      return ctx.rt;
    };
  }

  describe("Fission's hello.php (a script, $logger in scope)", () => {
    const rt = specialized(FISSION_HELLO);

    it("answers the script's output as text/plain and logs through $logger to stdout", async () => {
      const res = await request(rt().url, { headers: ME });
      expect(res.status).to.equal(200);
      expect(res.text).to.equal("Hello from PHP");
      expect(res.headers["content-type"]).to.equal("text/plain; charset=utf-8");
      await eventually(() => /\] Function\.WARNING: Hello logger \[\] \[\]\n/.test(rt().stdout()));
    });
  });

  describe("Fission's hellopsr.php (handler($context) writing to the PSR-7 response)", () => {
    const rt = specialized(FISSION_HELLOPSR);

    it("answers what the handler wrote to $context['response']", async () => {
      const res = await request(rt().url, { headers: ME });
      expect(res.status).to.equal(200);
      expect(res.text).to.equal("Hello from handler PHP");
      await eventually(() => rt().stdout().includes("Function.WARNING: Hello logger"));
    });
  });

  describe("Fission's stock.php shape (a form, and a returned withStatus(500))", () => {
    const rt = specialized(FISSION_STOCK);

    it("answers the response the handler returns, status included", async () => {
      const res = await request(rt().url, { headers: ME });
      expect(res.status).to.equal(500);
      expect(res.text).to.equal("You must use POST method");
    });

    it("parses a urlencoded form for getParsedBody(), and logs with a context", async () => {
      const post = (body: string) =>
        request(rt().url, {
          method: "POST",
          headers: { ...ME, "content-type": "application/x-www-form-urlencoded" },
          body,
        });
      const ok = await post("currency=btc");
      expect(ok.status).to.equal(200);
      expect(ok.json).to.deep.equal({ text: "btc-USD = 42.000000" });
      await eventually(() =>
        rt().stdout().includes('Function.DEBUG: Request :  {"currency":"btc"} []'),
      );
      const missing = await post("other=1");
      expect(missing.status).to.equal(500);
      expect(missing.text).to.equal("'currency' is not present in the POST request");
    });
  });

  describe("typed PSR-7 and PSR-3 code", () => {
    const rt = specialized(TYPED_PSR);

    it("gets a ServerRequestInterface with method, headers, query, body and uri", async () => {
      const res = await request(rt().url, {
        method: "PUT",
        path: "/items/7?a=1&list[]=x&list[]=y",
        headers: {
          ...ME,
          "X-Custom": "yes",
          "content-type": "application/x-www-form-urlencoded",
          "x-forwarded-host": "example.com",
          "x-forwarded-proto": "https",
          "x-forwarded-for": "203.0.113.9, 198.51.100.7",
          "X-Fizz-Params-id": "7",
          cookie: "a=1; b=two%20words",
        },
        body: "field=value&n=2",
      });
      expect(res.status, res.text).to.equal(203);
      expect(res.headers["x-multi"]).to.equal("a, b");
      expect(res.headers["content-type"]).to.equal("application/json");
      expect(res.json).to.deep.equal({
        method: "PUT",
        path: "/items/7",
        uriQuery: "a=1&list[]=x&list[]=y",
        host: "example.com",
        scheme: "https",
        query: { a: "1", list: ["x", "y"] },
        header: "yes",
        headerLower: ["yes"],
        hasMissing: false,
        body: "field=value&n=2",
        form: { field: "value", n: "2" },
        target: "/items/7?a=1&list[]=x&list[]=y",
        cookies: { a: "1", b: "two words" },
        remote: "198.51.100.7",
        attribute: "7",
      });
      await eventually(() =>
        rt().stdout().includes('Function.INFO: typed call {"path":"/items/7"} []'),
      );
    });
  });

  describe("exit(), fatal errors and crashes in a call", () => {
    const rt = specialized(PROBES);
    const call = (kind: string) => request(rt().url, { path: `/?kind=${kind}`, headers: ME });

    it("answers what the call had produced when it calls exit() or die(), and keeps serving", async () => {
      const exited = await call("exit");
      expect(exited.status).to.equal(200);
      expect(exited.text).to.equal("written before exit");
      const died = await call("die");
      expect(died.status).to.equal(200);
      expect(died.text).to.equal(""); // die()'s message is output, which a handler's goes to the log
      await eventually(() => rt().stdout().includes("died"));
      expect((await call("")).text).to.equal("probes");
    });

    for (const [kind, message] of [
      [
        "memory",
        /^probes\.php:17: PHP Fatal error: Allowed memory size of 16777216 bytes exhausted/,
      ],
      ["trigger", /^probes\.php:24: PHP Fatal error: a user error$/],
      [
        "undefined",
        /^probes\.php:20: Error: Call to undefined function undefined_function_here\(\)$/,
      ],
      [
        "type",
        /^probes\.php:22: TypeError: strlen\(\): Argument #1 \(\$string\) must be of type string, array given$/,
      ],
    ] as const) {
      it(`answers 500 FUNCTION_ERROR naming file and line for ${kind}, and keeps serving`, async () => {
        const res = await call(kind);
        expect(res.status).to.equal(500);
        expect(res.error().code).to.equal("FUNCTION_ERROR");
        expect(res.error().message).to.match(message);
        expect((await call("")).text).to.equal("probes");
        expect((await request(rt().url, { path: "/healthz" })).object().state).to.equal(
          "specialized",
        );
      });
    }

    it("answers 500 when the call's process dies without answering, and keeps serving", async () => {
      const res = await call("segv");
      expect(res.status).to.equal(500);
      expect(res.error().message).to.match(
        /process ended without answering \(killed by signal 9\)/,
      );
      expect((await call("")).text).to.equal("probes");
    });

    it("names the function's file, without a runtime line, for a return value it cannot send", async () => {
      const res = await call("int");
      expect(res.status).to.equal(500);
      expect(res.error().message).to.match(
        /^probes\.php: UnexpectedValueException: cannot answer with a value of type int/,
      );
    });

    it("keeps PHP's warnings out of the answer (they go to stderr)", async () => {
      expect((await call("warn")).text).to.equal("after a warning default");
    });

    it("answers 400 INVALID_BODY for JSON that is not, unless the function catches it", async () => {
      const post = (kind: string) =>
        request(rt().url, {
          method: "POST",
          path: `/?kind=${kind}`,
          headers: { ...ME, "content-type": "application/json" },
          body: "{not json",
        });
      const res = await post("invalid-json");
      expect(res.status).to.equal(400);
      expect(res.error().code).to.equal("INVALID_BODY");
      expect((await post("catches-json")).text).to.equal("caught");
    });

    it("starts every call from the specialized state: globals and statics do not carry over", async () => {
      for (let i = 0; i < 3; i++) {
        expect((await call("state")).json).to.deep.equal({ calls: 1, statics: 1 });
      }
    });
  });

  describe("a script's output buffer, exit() and fatal errors", () => {
    const rt = specialized(PRINTER);
    const print = (query: string) => request(rt().url, { path: `/?${query}`, headers: ME });
    const lines = (id: string) => [0, 1, 2, 3, 4].map((n) => `${id} ${n}\n`).join("");

    it("gives each of several calls running side by side only its own output", async () => {
      const ids = ["alpha", "beta", "gamma", "delta"];
      const results = await Promise.all(ids.map((id) => print(`id=${id}`)));
      results.forEach((res, i) => expect(res.text).to.equal(lines(ids[i]!)));
    });

    it("answers with http_response_code()'s status", async () => {
      const res = await print("id=s&status=201");
      expect(res.status).to.equal(201);
      expect(res.text).to.equal(lines("s"));
    });

    it("answers the output so far when the script calls exit()", async () => {
      const res = await print("id=e&then=exit");
      expect(res.status).to.equal(200);
      expect(res.text).to.equal(lines("e") + "exiting\n");
    });

    it("answers a fatal error as 500 naming file and line, without the output, and keeps serving", async () => {
      const res = await print("id=f&then=fatal");
      expect(res.status).to.equal(500);
      expect(res.error().code).to.equal("FUNCTION_ERROR");
      expect(res.error().message).to.match(
        /^printer\.php:12: PHP Fatal error: Cannot redeclare strlen\(\)/,
      );
      expect((await print("id=after")).text).to.equal(lines("after"));
    });
  });

  describe("HTTP framing under attack", () => {
    const rt = specialized(PROBES);
    /** Sends raw bytes on one connection; resolves with all it got until the server closed or
     * `waitMs` passed. */
    const raw = (bytes: string, waitMs = 8000) =>
      new Promise<string>((resolve, reject) => {
        const url = new URL(rt().url);
        const sock = net.connect(Number(url.port), url.hostname, () => sock.write(bytes));
        let got = "";
        sock.on("data", (d: Buffer) => (got += d.toString("latin1")));
        sock.on("error", reject);
        sock.on("close", () => resolve(got));
        setTimeout(() => sock.destroy(), waitMs);
      });
    const statuses = (got: string) => [...got.matchAll(/HTTP\/1\.1 (\d{3}) /g)].map((m) => m[1]);

    it("answers pipelined requests in order on one connection", async () => {
      const one = "GET /?kind=state HTTP/1.1\r\nHost: x\r\nX-Fizz-Instance: inst-1\r\n\r\n";
      const two =
        "GET / HTTP/1.1\r\nHost: x\r\nX-Fizz-Instance: inst-1\r\nConnection: close\r\n\r\n";
      const got = await raw(one + two);
      expect(statuses(got)).to.deep.equal(["200", "200"]);
      expect(got.indexOf('{"calls":1')).to.be.below(got.indexOf("probes"));
    });

    it("answers Expect: 100-continue before the body, then the call", async () => {
      const url = new URL(rt().url);
      const got = await new Promise<string>((resolve, reject) => {
        const sock = net.connect(Number(url.port), url.hostname, () =>
          sock.write(
            "POST / HTTP/1.1\r\nHost: x\r\nX-Fizz-Instance: inst-1\r\nContent-Length: 2\r\n" +
              "Expect: 100-continue\r\nConnection: close\r\n\r\n",
          ),
        );
        let text = "";
        sock.on("data", (d: Buffer) => {
          text += d.toString();
          if (text === "HTTP/1.1 100 Continue\r\n\r\n") sock.write("ok");
        });
        sock.on("error", reject);
        sock.on("close", () => resolve(text));
      });
      expect(statuses(got)).to.deep.equal(["100", "200"]);
      expect(got.endsWith("probes")).to.equal(true);
    });

    it("refuses Transfer-Encoding with Content-Length (smuggling) and closes", async () => {
      const smuggle =
        "POST / HTTP/1.1\r\nHost: x\r\nX-Fizz-Instance: inst-1\r\nContent-Length: 4\r\n" +
        "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /?kind=state HTTP/1.1\r\nHost: x\r\n\r\n";
      const got = await raw(smuggle);
      expect(statuses(got)).to.deep.equal(["400"]);
      expect(got).to.include("Connection: close");
    });

    it("refuses two Content-Lengths and a malformed chunk size", async () => {
      const two =
        "POST / HTTP/1.1\r\nHost: x\r\nX-Fizz-Instance: inst-1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab";
      expect(statuses(await raw(two))).to.deep.equal(["400"]);
      const chunk =
        "POST / HTTP/1.1\r\nHost: x\r\nX-Fizz-Instance: inst-1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n";
      expect(statuses(await raw(chunk))).to.deep.equal(["400"]);
    });

    it("refuses over-long headers with 431 and keeps serving", async () => {
      const res = await request(rt().url, { headers: { ...ME, "x-long": "a".repeat(70_000) } });
      expect(res.status).to.equal(431);
      expect((await request(rt().url, { headers: ME })).text).to.equal("probes");
    });

    it("keeps a header spelled with underscores out of $_SERVER, where it would pass for the gateway's", async () => {
      const src = {
        filename: "server.php",
        source: "<?php\nreturn [$_SERVER['HTTP_X_FIZZ_FUNCTION_NAME'] ?? null];\n",
      };
      const other = await phpRuntime.start();
      try {
        expect((await push(other, src)).status).to.equal(200);
        const forged = await request(other.url, {
          headers: { ...ME, x_fizz_function_name: "forged" },
        });
        expect(forged.json).to.deep.equal([null]);
        const real = await request(other.url, {
          headers: { ...ME, "x-fizz-function-name": "real" },
        });
        expect(real.json).to.deep.equal(["real"]);
      } finally {
        await other.kill();
      }
    });
  });

  describe("the specialize token", () => {
    const TOKEN = "php-token-0123456789abcdef";
    let rt: Runtime;
    before(async () => {
      rt = await phpRuntime.start({ FIZZ_SPECIALIZE_TOKEN: TOKEN });
      const body = specializeBody(PROBES.filename, PROBES.source);
      const res = await postJson(rt.url, "/v2/specialize", body, {
        "x-fizz-specialize-token": TOKEN,
      });
      expect(res.status, res.text).to.equal(200);
    });
    after(() => rt.kill());

    it("is absent from getenv(), $_SERVER, $_ENV and the environment of processes the function starts", async () => {
      const res = await request(rt.url, { path: "/?kind=env" });
      expect(res.json).to.deep.equal({
        getenv: false,
        server: null,
        env: null,
        all: false,
        child: false,
      });
    });
  });

  describe("entry points", () => {
    let rt: Runtime | undefined;
    afterEach(() => rt?.kill());

    it("runs a file that declares no handler as a script, even when it defines other functions", async () => {
      rt = await phpRuntime.start();
      const src = {
        filename: "page.php",
        source: "<?php\nfunction helper() { return 'x'; }\necho helper() . 'y';\n",
      };
      expect((await push(rt, src)).status).to.equal(200);
      expect((await request(rt.url, { headers: ME })).text).to.equal("xy");
    });

    it("runs a handler file's top level in the first call's process and once in the server, then serves calls side by side", async () => {
      rt = await phpRuntime.start();
      const src = {
        filename: "top.php",
        source: [
          "<?php",
          "file_put_contents(__DIR__ . '/loads.txt', 'x', FILE_APPEND);",
          "function handler() { usleep(50000); return file_get_contents(__DIR__ . '/loads.txt'); }",
          "",
        ].join("\n"),
      };
      await sleep(300); // a warm pool instance: its spare is forked and waiting
      expect((await push(rt, src)).status).to.equal(200);
      expect((await request(rt.url, { headers: ME })).text).to.equal("x");
      const url = rt.url;
      const together = await Promise.all([1, 2, 3, 4].map(() => request(url, { headers: ME })));
      for (const res of together) expect(res.text).to.equal("xx");
    });

    it("uses a script's return value when it returns one", async () => {
      rt = await phpRuntime.start();
      const src = {
        filename: "ret.php",
        source: "<?php\necho 'logged';\nreturn ['from' => 'return'];\n",
      };
      expect((await push(rt, src)).status).to.equal(200);
      const res = await request(rt.url, { headers: ME });
      expect(res.json).to.deep.equal({ from: "return" });
    });

    it("answers FUNCTION_LOAD_FAILED naming file and line when a handler file's top level dies with a fatal error", async () => {
      rt = await phpRuntime.start();
      const src = {
        filename: "fatal.php",
        source: "<?php\nfunction handler() { return 1; }\n\nfunction strlen() {}\n",
        entrypoint: "handler",
      };
      const res = await push(rt, src);
      expect(res.status).to.equal(500);
      expect(res.error().code).to.equal("FUNCTION_LOAD_FAILED");
      expect(res.error().message).to.match(
        /^fatal\.php:4: PHP Fatal error: Cannot redeclare strlen\(\)/,
      );
      // Loaded in the warm spare (the usual case), only that process dies and the instance is
      // failed; loaded in the server itself (no spare yet), the server exits after answering.
      const health = await request(rt.url, { path: "/healthz" }).catch(() => undefined);
      if (health) expect(health.object().state).to.equal("failed");
      else expect(await rt.exited).to.equal(255);
    });
  });

  describe("archives built to attack the tar reader", () => {
    let rt: Runtime;
    let workdir: string;
    before(async () => {
      workdir = mkdtempSync(join(tmpdir(), "fizz-php-archive-"));
      rt = await phpRuntime.start({ FIZZ_WORKDIR: workdir });
    });
    after(async () => {
      await rt.kill();
      rmSync(workdir, { recursive: true, force: true });
    });

    const refused = async (archive: Buffer, name: string) => {
      const res = await specializeArchive(rt, archive);
      expect(res.status, res.text).to.equal(400);
      expect(res.error().code).to.equal("ARCHIVE_UNSAFE");
      expect(res.error().message).to.include(JSON.stringify(name));
      expect(readdirSync(workdir)).to.not.include("fn");
      expect((await request(rt.url, { path: "/healthz" })).object().state).to.equal("warm");
    };

    it("refuses a pax header or a GNU long name that climbs out of the package", async () => {
      await refused(tarOf(paxNamed("../pax-escape", "x")), "../pax-escape");
      await refused(tarOf(gnuNamed("lib/../../gnu-escape", "x")), "lib/../../gnu-escape");
      await refused(tarOf(paxNamed("/etc/pax-absolute", "x")), "/etc/pax-absolute");
      expect(existsSync(join(workdir, "..", "pax-escape"))).to.equal(false);
    });

    it("refuses backslashes, sparse files and unknown entry types", async () => {
      await refused(tarOf([{ name: "a\\..\\b", type: "0", body: "x" }]), "a\\..\\b");
      await refused(tarOf([{ name: "sparse", type: "S", body: "" }]), "sparse");
      await refused(tarOf([{ name: "odd", type: "Z", body: "" }]), "odd");
    });

    it("refuses a pax header that makes a link out of a file entry's name", async () => {
      const archive = tarOf([
        {
          name: "PaxHeader/x",
          type: "x",
          body: paxRecord("path", "link") + paxRecord("linkpath", "/etc/passwd"),
        },
        { name: "link", type: "2" },
      ]);
      await refused(archive, "link");
    });

    it("refuses a truncated gzip stream", async () => {
      const whole = tarOf([{ name: "index.php", type: "0", body: "<?php echo 1;" }]);
      const res = await specializeArchive(rt, whole.subarray(0, whole.length - 12));
      expect(res.error().code).to.equal("ARCHIVE_UNSAFE");
      expect(readdirSync(workdir)).to.not.include("fn");
    });

    it("reports a refused archive whose bytes were tampered with as DIGEST_MISMATCH", async () => {
      const archive = tarOf(paxNamed("../x", "x"));
      const res = await specializeArchive(rt, archive, { digest: sha256("other") });
      expect(res.error().code).to.equal("DIGEST_MISMATCH");
    });

    it("then takes long names from pax and GNU headers", async () => {
      const deep = `${"d".repeat(60)}/${"e".repeat(60)}`;
      const archive = tarOf([
        ...paxNamed(`${deep}/pax.txt`, "from pax"),
        ...gnuNamed(`${deep}/gnu.txt`, "from gnu"),
        {
          name: "index.php",
          type: "0",
          body: `<?php\nfunction handler() { return file_get_contents('${deep}/pax.txt') . ' ' . file_get_contents('${deep}/gnu.txt'); }\n`,
        },
      ]);
      const res = await specializeArchive(rt, archive);
      expect(res.status, res.text).to.equal(200);
      expect((await request(rt.url, { headers: ME })).text).to.equal("from pax from gnu");
      expect(readFileSync(join(workdir, "fn", deep, "pax.txt"), "utf8")).to.equal("from pax");
    });
  });

  describe("a package made by tar from a directory", () => {
    let rt: Runtime | undefined;
    afterEach(() => rt?.kill());

    it("implements the psr/http-message 2.0 and psr/log 3.0 interfaces a package's autoloader brings", async () => {
      rt = await phpRuntime.start();
      const res = await specializeArchive(rt, await packageArchive(PSR2_PACKAGE), {
        entrypoint: "handlers/Typed.php::execute",
      });
      expect(res.status, res.text).to.equal(200);
      const call = await request(rt.url, { headers: ME });
      expect(call.status, call.text).to.equal(201);
      expect(call.text).to.equal("vendor vendor logger 8080");
    });

    it("writes files 0600 and executables 0700, and runs from the package directory", async () => {
      rt = await phpRuntime.start();
      const files = {
        "index.php":
          "<?php\nfunction handler() { return getcwd() === __DIR__ ? 'in fn' : getcwd(); }\n",
      };
      const res = await specializeArchive(rt, await packageArchive(files));
      expect(res.status, res.text).to.equal(200);
      expect((await request(rt.url, { headers: ME })).text).to.equal("in fn");
    });
  });
});
