import { expect } from "chai";
import {
  b64,
  envBody,
  fnBody,
  registryEnv,
  snapshot,
  startRegistry,
  startStack,
  type Running,
  type Stack,
} from "./helpers";

/**
 * Go and C# warm instances load what the builder compiled, never a source file: a real registry
 * refuses `spec.code` for a function of such an environment (naming the field and the command that
 * works), and refuses to turn an environment into one while single-file functions use it.
 */
describe("registry: functions of compiled runtimes (go, dotnet) need source packages", () => {
  let stack: Stack;
  let reg: Running;
  const goCode = { filename: "hello.go", content: b64("package main\n") };

  before(async () => {
    stack = await startStack();
    reg = await startRegistry(registryEnv(stack));
    const d = reg.api.ns();
    for (const res of [
      await d.create("environments", envBody("go", { image: "fizz/env-go" })),
      await d.create(
        "environments",
        envBody("dotnet", { image: "ghcr.io/acme/fizz/env-dotnet:1" }),
      ),
      await d.create("environments", envBody("php", { image: "fizz/env-php" })),
      await d.create("environments", envBody("python")),
      await d.create("functions", fnBody("hello", "python")),
    ])
      expect(res.status, JSON.stringify(res.body)).to.equal(201);
  });
  after(async () => {
    await reg?.svc.stop();
    await stack?.cleanup();
  });

  it("refuses spec.code for a go environment with 400 VALIDATION_FAILED on spec.code, telling to deploy a source package, and stores nothing", async () => {
    const before = await snapshot(stack.client);
    const res = await reg.api.ns().create("functions", fnBody("gofn", "go", { code: goCode }));
    expect(res.status, JSON.stringify(res.body)).to.equal(400);
    expect(res.body.error).to.include({ code: "VALIDATION_FAILED", field: "spec.code" });
    expect(res.body.error.message).to.match(
      /^spec\.code: environment "go" runs go, which is compiled: deploy a source package instead, e\.g\. fizz fn create --src hello\.go/,
    );
    expect(await snapshot(stack.client)).to.deep.equal(before);
  });

  it("refuses spec.code for a dotnet environment whatever the image's registry prefix and tag", async () => {
    const code = { filename: "hello.cs", content: b64("class F {}\n") };
    const res = await reg.api.ns().create("functions", fnBody("csfn", "dotnet", { code }));
    expect(res.status).to.equal(400);
    expect(res.body.error.field).to.equal("spec.code");
    expect(res.body.error.message).to.contain("--src hello.cs");
  });

  it("refuses moving a single-file function to a go environment", async () => {
    const res = await reg.api.ns().patch("functions", "hello", { spec: { environment: "go" } });
    expect(res.status).to.equal(400);
    expect(res.body.error).to.include({ code: "VALIDATION_FAILED", field: "spec.code" });
  });

  it("refuses switching an environment to a compiled image while single-file functions use it, naming them", async () => {
    const res = await reg.api
      .ns()
      .patch("environments", "python", { spec: { image: "fizz/env-go" } });
    expect(res.status).to.equal(400);
    expect(res.body.error).to.include({ code: "VALIDATION_FAILED", field: "spec.image" });
    expect(res.body.error.message).to.contain('functions "hello"');
  });

  it("accepts spec.code for the interpreted php runtime", async () => {
    const code = { filename: "hello.php", content: b64("<?php\nreturn fn() => 'hi';\n") };
    const res = await reg.api.ns().create("functions", fnBody("phpfn", "php", { code }));
    expect(res.status, JSON.stringify(res.body)).to.equal(201);
  });
});
