import { expect } from "chai";
import type { V1Pod } from "@kubernetes/client-node";
import {
  builderImageOf,
  builderPodName,
  builderPodState,
  DEADLINE_ANNOTATION,
  isLeftover,
} from "../src/build/pod-runner-pod";
import { environment } from "./harness";

describe("builder pods (pure parts)", () => {
  it("derives the builder image from the runtime image, keeping registry, tag and digest", () => {
    const of = (image: string) => builderImageOf(environment("e", image, 0));
    expect(of("fizz/env-node")).to.equal("fizz/builder-node");
    expect(of("fizz/env-python:3.12")).to.equal("fizz/builder-python:3.12");
    expect(of("reg.example:5000/acme/fizz/env-node:1.2")).to.equal(
      "reg.example:5000/acme/fizz/builder-node:1.2",
    );
    expect(of("env-node@sha256:abc")).to.equal("builder-node@sha256:abc");
  });

  it("prefers the environment's builder.image and refuses an image with no builder sibling", () => {
    const env = environment("e", "acme/custom-runtime", 0);
    expect(() => builderImageOf(env)).to.throw(/spec\.builder\.image/);
    env.spec.builder = { image: "acme/custom-builder", timeoutSeconds: 300, maxDeploymentBytes: 1 };
    expect(builderImageOf(env)).to.equal("acme/custom-builder");
  });

  it("names pods as DNS-1123 labels whatever the package name", () => {
    for (const n of ["default-hello", "X".repeat(200), "a_b.c", "---"]) {
      const name = builderPodName(n);
      expect(name).to.match(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/);
      expect(name.length).to.be.at.most(63);
    }
  });

  it("reads a pod as ready only when Running, Ready and with an IP; a bad image fails at once", () => {
    const pod = (status: NonNullable<V1Pod["status"]>): V1Pod => ({
      metadata: { name: "p" },
      status,
    });
    expect(builderPodState(pod({ phase: "Pending" })).kind).to.equal("waiting");
    expect(
      builderPodState(
        pod({
          phase: "Running",
          podIP: "127.0.0.9",
          conditions: [{ type: "Ready", status: "True" }],
        }),
      ),
    ).to.deep.equal({ kind: "ready", address: "http://127.0.0.9:8888" });
    const bad = builderPodState(
      pod({
        phase: "Pending",
        containerStatuses: [
          {
            name: "builder",
            image: "x",
            imageID: "",
            ready: false,
            restartCount: 0,
            state: { waiting: { reason: "ErrImagePull", message: "no such image" } },
          },
        ],
      }),
    );
    expect(bad).to.deep.equal({ kind: "failed", reason: "ErrImagePull: no such image" });
    expect(builderPodState(pod({ phase: "Succeeded" })).kind).to.equal("failed");
    expect(builderPodState(undefined).kind).to.equal("failed");
  });

  it("treats ended pods and pods past their deadline as leftovers, and live ones as not", () => {
    const now = Date.now();
    const pod = (deadline: number | undefined, phase = "Running"): V1Pod => ({
      metadata: {
        name: "p",
        annotations: deadline === undefined ? {} : { [DEADLINE_ANNOTATION]: String(deadline) },
      },
      status: { phase },
    });
    expect(isLeftover(pod(now + 60_000), now)).to.equal(false);
    expect(isLeftover(pod(now - 1), now)).to.equal(true);
    expect(isLeftover(pod(now + 60_000, "Succeeded"), now)).to.equal(true);
    expect(isLeftover(pod(undefined), now)).to.equal(true);
  });
});
