import { expect } from "chai";
import {
  builderImageOf,
  COMPILED_RUNTIMES,
  ErrorCodes,
  FizzError,
  errorBody,
  httpStatusOf,
  isCompiledRuntime,
  RUNTIME_NAMES,
  runtimeOfBuilderImage,
  runtimeOfImage,
} from "@fizz/events";

describe("errors", () => {
  it("maps codes to the HTTP statuses users see", () => {
    expect(httpStatusOf("NO_ROUTE")).to.equal(404);
    expect(httpStatusOf("INSTANCE_FAILED")).to.equal(502);
    expect(httpStatusOf("TIMEOUT")).to.equal(504);
    expect(httpStatusOf("NO_CAPACITY")).to.equal(503);
    expect(httpStatusOf("TOO_MANY_REQUESTS")).to.equal(429);
    expect(httpStatusOf("ROUTE_CONFLICT")).to.equal(409);
    expect(httpStatusOf("CODE_TOO_LARGE")).to.equal(413);
    expect(httpStatusOf("MISDIRECTED")).to.equal(421);
  });

  it("gives every code a 4xx or 5xx status", () => {
    for (const [code, status] of Object.entries(ErrorCodes)) {
      expect(status, code).to.be.within(400, 599);
    }
  });

  it("marks transient conditions retryable and input errors not", () => {
    expect(new FizzError("NO_CAPACITY", "x").retryable).to.equal(true);
    expect(new FizzError("UNAVAILABLE", "x").retryable).to.equal(true);
    expect(new FizzError("VALIDATION_FAILED", "x").retryable).to.equal(false);
    expect(new FizzError("VALIDATION_FAILED", "x", { retryable: true }).retryable).to.equal(true);
  });

  it("renders the JSON error body with code, message, field and retryable", () => {
    const body = errorBody(
      new FizzError("VALIDATION_FAILED", "spec.poolSize: too big", { field: "spec.poolSize" }),
    );
    expect(body).to.deep.equal({
      error: {
        code: "VALIDATION_FAILED",
        message: "spec.poolSize: too big",
        field: "spec.poolSize",
        retryable: false,
      },
    });
  });

  it("turns unknown codes from the wire into INTERNAL rather than trusting them", () => {
    const e = FizzError.fromWire({ code: "LOL", message: "m" });
    expect(e.code).to.equal("INTERNAL");
    expect(FizzError.fromWire("junk").code).to.equal("INTERNAL");
  });

  it("keeps the original error as cause when wrapping", () => {
    const orig = new Error("boom");
    const e = FizzError.from(orig);
    expect(e.code).to.equal("INTERNAL");
    expect(e.cause).to.equal(orig);
    expect(FizzError.from(e)).to.equal(e);
  });
});

describe("runtime images", () => {
  it("maps fizz runtime images with any registry prefix or tag", () => {
    expect(runtimeOfImage("fizz/env-python")).to.equal("python");
    expect(runtimeOfImage("fizz/env-node")).to.equal("node");
    expect(runtimeOfImage("ghcr.io/acme/fizz/env-python:3.12")).to.equal("python");
    expect(runtimeOfImage("localhost:5000/env-node:20@sha256:abc")).to.equal("node");
    expect(runtimeOfImage("env-node")).to.equal("node");
  });

  it("maps the go, php, ruby and dotnet images", () => {
    expect(runtimeOfImage("fizz/env-go")).to.equal("go");
    expect(runtimeOfImage("fizz/env-php:8.2")).to.equal("php");
    expect(runtimeOfImage("ghcr.io/acme/fizz/env-ruby")).to.equal("ruby");
    expect(runtimeOfImage("env-dotnet@sha256:abc")).to.equal("dotnet");
  });

  it("calls go and dotnet compiled and the interpreted runtimes not", () => {
    expect([...COMPILED_RUNTIMES].sort()).to.deep.equal(["dotnet", "go"]);
    expect(isCompiledRuntime(runtimeOfImage("fizz/env-go"))).to.equal(true);
    expect(isCompiledRuntime(runtimeOfImage("fizz/env-dotnet:6"))).to.equal(true);
    for (const r of ["node", "python", "php", "ruby"] as const)
      expect(isCompiledRuntime(r), r).to.equal(false);
    expect(isCompiledRuntime(undefined)).to.equal(false);
  });

  it("names each runtime's builder image and maps builder images back", () => {
    expect(RUNTIME_NAMES).to.deep.equal(["node", "python", "go", "php", "ruby", "dotnet"]);
    expect(builderImageOf("go")).to.equal("fizz/builder-go");
    expect(runtimeOfBuilderImage("fizz/builder-dotnet:1")).to.equal("dotnet");
    expect(runtimeOfBuilderImage("reg:5000/fizz/builder-go@sha256:x")).to.equal("go");
    expect(runtimeOfBuilderImage("fizz/builder-rust")).to.equal(undefined);
    expect(runtimeOfBuilderImage("fizz/env-go")).to.equal(undefined);
  });

  it("knows no other image", () => {
    expect(runtimeOfImage("fizz/env-rust")).to.equal(undefined);
    expect(runtimeOfImage("ruby:3.1")).to.equal(undefined);
    expect(runtimeOfImage("python:3.12")).to.equal(undefined);
    expect(runtimeOfImage("")).to.equal(undefined);
  });
});
