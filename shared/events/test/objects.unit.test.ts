import { expect } from "chai";
import {
  EnvironmentSpec,
  FunctionSpecInput,
  HttpTriggerSpec,
  CreateInput,
  isDnsLabel,
} from "@fizz/events";

describe("objects", () => {
  it("accepts DNS-1123 labels only", () => {
    for (const ok of ["hello", "a", "hello-node", "a1", "x".repeat(63)])
      expect(isDnsLabel(ok), ok).to.equal(true);
    for (const bad of ["Hello", "-a", "a-", "a_b", "a.b", "", "x".repeat(64)])
      expect(isDnsLabel(bad), bad).to.equal(false);
    expect(CreateInput.safeParse({ name: "Bad_Name", spec: {} }).success).to.equal(false);
  });

  it("defaults an environment's pool size to 3", () => {
    expect(EnvironmentSpec.parse({ image: "fizz/env-python" }).poolSize).to.equal(3);
  });

  it("defaults function limits", () => {
    const s = FunctionSpecInput.parse({
      environment: "python",
      code: { filename: "hello.py", content: "cHJpbnQoKQ==" },
    });
    expect(s).to.include({
      minInstances: 0,
      maxInstances: 10,
      timeoutSeconds: 60,
      idleTimeoutSeconds: 120,
    });
  });

  it("refuses a code file name that could escape the work directory", () => {
    for (const filename of ["../x.py", "a/b.py", "..", ""]) {
      const r = FunctionSpecInput.safeParse({
        environment: "python",
        code: { filename, content: "" },
      });
      expect(r.success, filename).to.equal(false);
    }
  });

  it("requires exactly one of path and prefix on a trigger", () => {
    expect(HttpTriggerSpec.safeParse({ function: "f" }).success).to.equal(false);
    expect(HttpTriggerSpec.safeParse({ function: "f", path: "/a", prefix: "/b" }).success).to.equal(
      false,
    );
    const ok = HttpTriggerSpec.parse({ function: "f", path: "/users/{id}", methods: ["get"] });
    expect(ok.methods).to.deep.equal(["GET"]);
  });

  it("refuses unknown HTTP methods and paths without a leading slash", () => {
    expect(
      HttpTriggerSpec.safeParse({ function: "f", path: "/a", methods: ["FETCH"] }).success,
    ).to.equal(false);
    expect(HttpTriggerSpec.safeParse({ function: "f", path: "a" }).success).to.equal(false);
  });
});
